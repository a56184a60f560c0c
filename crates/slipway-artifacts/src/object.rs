//! [`ArtifactStore`] over any [`ObjectStore`].
//!
//! Atomicity comes from the backends: a single put or a completed multipart upload becomes
//! visible all at once (S3 by its API contract; `LocalFileSystem` by writing `<name>#<n>` and
//! renaming it into place). Our part is to never complete an upload whose body failed, and to
//! abort it so nothing is left behind.

use std::io::ErrorKind;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart};
use slipway_core::artifact_path::ArtifactPath;
use slipway_core::ports::{ArtifactEntry, ArtifactObject, ArtifactStore, ByteStream};
use slipway_core::{Error, Result};

use crate::local;

/// S3 wants parts of at least 5 MiB and at most 10 000 of them, so 8 MiB parts allow objects of
/// up to ~78 GiB. A body no larger than one part goes up in a single put, saving the three round
/// trips of a multipart upload.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts being written while the next one fills; bounds an upload's memory to about
/// `(1 + MAX_PARTS_IN_FLIGHT) * PART_SIZE` whatever the file size.
const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Artifacts in an object store, addressed by their relative path as the key.
#[derive(Debug, Clone)]
pub struct ObjectArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// The folder, when the backend is [`LocalFileSystem`]: see the `local` module for what a
    /// real filesystem needs on top of the object-store view.
    local_root: Option<PathBuf>,
}

impl ObjectArtifactStore {
    /// Artifacts in `root`, created if missing; the layout on disk is the artifact paths
    /// themselves, as MLflow's local artifact repository has it.
    pub fn local(root: &FsPath) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::internal(format!("creating artifact folder {}", root.display()), e)
        })?;
        // `LocalFileSystem` canonicalizes its prefix too; pruning compares paths against ours.
        let root = std::fs::canonicalize(root).map_err(|e| {
            Error::internal(format!("resolving artifact folder {}", root.display()), e)
        })?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| Error::internal(format!("opening artifact folder {}", root.display()), e))?
            // A put that returned must survive a crash: the metadata store will say the
            // artifact exists.
            .with_fsync(true);
        Ok(ObjectArtifactStore {
            store: Arc::new(store),
            local_root: Some(root),
        })
    }

    /// Artifacts in an object store without real directories (S3 and the like, or
    /// `object_store::memory::InMemory`), keyed by artifact path. A local folder goes through
    /// [`ObjectArtifactStore::local`], which adds what a filesystem needs.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectArtifactStore {
            store,
            local_root: None,
        }
    }

    /// Artifacts kept in memory: for commands that need an application but never touch
    /// artifacts (users, tokens), so they neither create folders nor reach a bucket.
    pub fn in_memory() -> Self {
        ObjectArtifactStore::new(Arc::new(object_store::memory::InMemory::new()))
    }

    /// Artifacts in an S3 bucket (or an S3-compatible service) under `s3://BUCKET[/PREFIX]`,
    /// configured the standard way: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL` (and the rest of object_store's `AWS_*` variables,
    /// instance and web-identity credentials included). Plain `http://` is allowed only toward
    /// an endpoint named as such. Checked with one listing, so a wrong bucket or credentials
    /// stop the server at start, not at the first upload.
    #[cfg(feature = "s3")]
    pub async fn s3(url: &str) -> Result<Self> {
        use object_store::aws::AmazonS3Builder;
        use object_store::prefix::PrefixStore;
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::invalid(format!("'{url}' is not an s3:// URL (s3://BUCKET/PREFIX)"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::invalid(format!(
                "'{url}' names no bucket (s3://BUCKET/PREFIX)"
            )));
        }
        let endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|name| std::env::var(name).ok());
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
            .build()
            .map_err(|e| Error::invalid(format!("configuring {url}: {e}")))?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        store
            .list_with_delimiter(None)
            .await
            .map_err(|e| Error::invalid(format!("cannot reach {url}: {e}")))?;
        Ok(ObjectArtifactStore::new(store))
    }

    fn is_reserved(&self, path: &ArtifactPath) -> bool {
        self.local_root.is_some() && local::is_staging_name(path.file_name())
    }

    fn local_path(&self, path: &ArtifactPath) -> Option<PathBuf> {
        self.local_root
            .as_deref()
            .map(|root| local::fs_path(root, path))
    }

    /// Whether nothing can be at `path` on disk because it, or one of its parents, is missing or
    /// a file. `LocalFileSystem` reports the latter case (`ENOTDIR`) as an I/O failure.
    async fn surely_absent_on_disk(&self, path: &ArtifactPath) -> bool {
        let Some(full) = self.local_path(path) else {
            return false;
        };
        match tokio::fs::symlink_metadata(&full).await {
            Ok(_) => false,
            Err(e) => matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory),
        }
    }

    async fn cleanup_failed_write(&self, path: &ArtifactPath) {
        if let Some(root) = &self.local_root {
            local::prune_ancestors(root, path).await;
        }
    }

    /// Tells a write refused because of the caller's path (a directory is already there, or a
    /// parent is a file) from a storage failure. Only run once a write failed, so the extra
    /// requests cost nothing on the happy path.
    async fn write_failed(
        &self,
        path: &ArtifactPath,
        key: &Path,
        source: object_store::Error,
    ) -> Error {
        self.cleanup_failed_write(path).await;
        let is_dir = self
            .store
            .list_with_delimiter(Some(key))
            .await
            .is_ok_and(|listing| {
                !listing.objects.is_empty() || !listing.common_prefixes.is_empty()
            });
        if is_dir {
            return Error::invalid(format!(
                "Cannot write artifact '{path}': a directory of that name exists"
            ));
        }
        let mut ancestor = key.parent();
        while let Some(dir) = ancestor.filter(|dir| !dir.is_root()) {
            if self.store.head(&dir).await.is_ok() {
                return Error::invalid(format!(
                    "Cannot write artifact '{path}': '{dir}' is a file"
                ));
            }
            ancestor = dir.parent();
        }
        Error::internal(format!("writing artifact '{path}'"), source)
    }

    async fn put_multipart(
        &self,
        path: &ArtifactPath,
        key: &Path,
        first: Vec<Bytes>,
        body: ByteStream,
    ) -> Result<u64> {
        let upload = match self.store.put_multipart(key).await {
            Ok(upload) => upload,
            Err(e) => return Err(self.write_failed(path, key, e).await),
        };
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut written = 0;
        if let Err(e) = pump(&mut writer, path, first, body, &mut written).await {
            // Aborting (rather than dropping) waits for the staged data to be removed, so the
            // caller sees a clean store as soon as we return.
            if let Err(abort) = writer.abort().await {
                tracing::warn!(artifact = %path, error = %abort, "aborting a failed upload failed");
            }
            self.cleanup_failed_write(path).await;
            return Err(e);
        }
        // `finish` aborts the upload itself when completing fails.
        match writer.finish().await {
            Ok(_) => Ok(written),
            Err(e) => Err(self.write_failed(path, key, e).await),
        }
    }
}

/// Feeds the body to the upload, waiting for parts in flight so that a fast client cannot make
/// us buffer the whole file.
async fn pump(
    writer: &mut WriteMultipart,
    path: &ArtifactPath,
    first: Vec<Bytes>,
    mut body: ByteStream,
    written: &mut u64,
) -> Result<()> {
    for chunk in first {
        *written += chunk.len() as u64;
        writer.put(chunk);
    }
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| body_failed(path, e))?;
        writer
            .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
            .await
            .map_err(|e| Error::internal(format!("writing artifact '{path}'"), e))?;
        *written += chunk.len() as u64;
        writer.put(chunk);
    }
    Ok(())
}

/// The body is what the client sends: it breaking off (disconnect, size limit, bad chunked
/// encoding) is the request's fault, not the store's.
fn body_failed(path: &ArtifactPath, e: std::io::Error) -> Error {
    Error::invalid(format!(
        "Upload of artifact '{path}' failed while reading the body: {e}"
    ))
}

/// `Path::parse` keeps the name as is (no percent-encoding), so files on disk carry the artifact
/// names verbatim; it still refuses control characters, which `ArtifactPath` lets through.
fn key(path: &ArtifactPath) -> Result<Path> {
    Path::parse(path.as_str())
        .map_err(|e| Error::invalid(format!("Invalid artifact path '{path}': {e}")))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

#[async_trait]
impl ArtifactStore for ObjectArtifactStore {
    async fn put(&self, path: &ArtifactPath, mut body: ByteStream) -> Result<u64> {
        if self.is_reserved(path) {
            return Err(Error::invalid(format!(
                "Invalid artifact path '{path}': names ending in '#<digits>' are reserved for \
                 uploads in progress"
            )));
        }
        let key = key(path)?;
        // Checked up front on disk, where it costs a stat: renaming the finished upload over a
        // directory would fail only after the whole body was written, and `LocalFileSystem`
        // then leaves its staging file behind (its `complete` forgets the file before renaming).
        if let Some(full) = self.local_path(path)
            && tokio::fs::metadata(&full)
                .await
                .is_ok_and(|meta| meta.is_dir())
        {
            return Err(Error::invalid(format!(
                "Cannot write artifact '{path}': a directory of that name exists"
            )));
        }
        // Hold back up to one part: only then do we know whether a single put will do.
        let mut first = Vec::new();
        let mut first_len = 0;
        while first_len <= PART_SIZE {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| body_failed(path, e))?;
                    first_len += chunk.len();
                    first.push(chunk);
                }
                None => {
                    return match self.store.put(&key, first.into_iter().collect()).await {
                        Ok(_) => Ok(first_len as u64),
                        Err(e) => Err(self.write_failed(path, &key, e).await),
                    };
                }
            }
        }
        self.put_multipart(path, &key, first, body).await
    }

    async fn get(&self, path: &ArtifactPath) -> Result<Option<ArtifactObject>> {
        if self.is_reserved(path) {
            return Ok(None);
        }
        let key = key(path)?;
        let found = match self.store.get(&key).await {
            Ok(found) => found,
            // `LocalFileSystem` answers NotFound for a directory too.
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                if self.surely_absent_on_disk(path).await {
                    return Ok(None);
                }
                return Err(Error::internal(format!("reading artifact '{path}'"), e));
            }
        };
        let size = found.meta.size;
        let body = match found.payload {
            GetResultPayload::File(file, _) => local::file_stream(file, size),
            GetResultPayload::Stream(stream) => Box::pin(stream.map_err(std::io::Error::from)),
        };
        Ok(Some(ArtifactObject { size, body }))
    }

    async fn list(&self, path: Option<&ArtifactPath>) -> Result<Option<Vec<ArtifactEntry>>> {
        if let Some(path) = path
            && self.surely_absent_on_disk(path).await
        {
            return Ok(None);
        }
        let prefix = path.map(key).transpose()?;
        let listing = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| {
                let at = path.map_or("the artifact root".to_owned(), |p| format!("'{p}'"));
                Error::internal(format!("listing artifacts under {at}"), e)
            })?;
        let dirs = listing.common_prefixes.iter().filter_map(|dir| {
            Some(ArtifactEntry {
                name: dir.filename()?.to_owned(),
                is_dir: true,
                size: None,
            })
        });
        let staging = self.local_root.is_some();
        let files = listing.objects.iter().filter_map(|object| {
            let name = object.location.filename()?;
            (!(staging && local::is_staging_name(name))).then(|| ArtifactEntry {
                name: name.to_owned(),
                is_dir: false,
                size: Some(object.size),
            })
        });
        let mut entries: Vec<ArtifactEntry> = dirs.chain(files).collect();
        // A key prefix with nothing under it does not exist; the root always does.
        if entries.is_empty() && path.is_some() {
            return Ok(None);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(entries))
    }

    async fn delete(&self, path: &ArtifactPath) -> Result<()> {
        if self.surely_absent_on_disk(path).await {
            return Ok(());
        }
        let key = key(path)?;
        let failed = |e| Error::internal(format!("deleting artifact '{path}'"), e);
        // `LocalFileSystem` refuses to delete a directory as a file; `head` tells them apart.
        if !self.is_reserved(path) {
            match self.store.head(&key).await {
                Ok(_) => match self.store.delete(&key).await {
                    Err(e) if !is_not_found(&e) => return Err(failed(e)),
                    _ => {}
                },
                Err(e) if !is_not_found(&e) => return Err(failed(e)),
                Err(_) => {}
            }
        }
        // Listing under `key` means under `key/`: a sibling like `key2` is never matched.
        let below = self
            .store
            .list(Some(&key))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(below);
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Err(e) if !is_not_found(&e) => return Err(failed(e)),
                _ => {}
            }
        }
        if let Some(root) = &self.local_root {
            local::prune_tree(root, path).await;
        }
        Ok(())
    }
}
