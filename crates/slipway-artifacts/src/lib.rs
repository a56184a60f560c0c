//! The [`ArtifactStore`](slipway_core::ports::ArtifactStore) port over [`object_store`].
//!
//! - `object` — [`ObjectArtifactStore`]: the port, written once against `dyn ObjectStore`, so a
//!   backend needs only a constructor: a local folder, or S3 (cargo feature `s3`); GCS and
//!   Azure Blob would follow the same way through object_store's `gcp` and `azure` backends.
//! - `local` — what only a real filesystem needs: pruning the empty directories an object store
//!   would not have, refusing the file names `LocalFileSystem` reserves for staged uploads, and
//!   streaming files out in large reads.

mod local;
mod object;

pub use object::ObjectArtifactStore;
