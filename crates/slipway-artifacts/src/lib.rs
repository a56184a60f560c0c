//! The [`ArtifactStore`](slipway_core::ports::ArtifactStore) port over [`object_store`].
//!
//! - `object` — [`ObjectArtifactStore`]: the port, written once against `dyn ObjectStore` so that
//!   another backend (S3, behind a cargo feature) needs only a constructor.
//! - `local` — what only a real filesystem needs: pruning the empty directories an object store
//!   would not have, refusing the file names `LocalFileSystem` reserves for staged uploads, and
//!   streaming files out in large reads.

mod local;
mod object;

pub use object::ObjectArtifactStore;
