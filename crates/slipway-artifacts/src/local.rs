//! Local-filesystem specifics. An object store has no directories, only key prefixes; a folder
//! on disk does, and `LocalFileSystem` leaves them behind after deletes and failed uploads. An
//! empty directory would then list as a child although nothing is under it, so we prune them.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use slipway_core::artifact_path::ArtifactPath;
use slipway_core::ports::ByteStream;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

/// `object_store`'s own file stream reads 8 KiB per blocking task, which makes a multi-GB
/// download cost hundreds of thousands of thread hand-offs.
const FILE_READ_CHUNK: usize = 256 * 1024;

/// Whether `name` looks like a staged upload (`<name>#<digits>`). `LocalFileSystem` writes an
/// upload to such a file and renames it into place; it refuses to address files named like this
/// and hides them from listings — but only when the name holds a single `#`, so `a#b#1` (the
/// staging file of `a#b`) would leak into listings. Treating every `#<digits>` suffix as reserved
/// covers both.
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn fs_path(root: &Path, path: &ArtifactPath) -> PathBuf {
    let mut full = root.to_path_buf();
    full.extend(path.as_str().split('/'));
    full
}

/// Streams an opened file; the handle was opened before any later overwrite renamed a new file
/// over the name, so the reader keeps seeing the object it asked for.
pub(crate) fn file_stream(file: File, size: u64) -> ByteStream {
    let reader = tokio::fs::File::from_std(file).take(size);
    Box::pin(ReaderStream::with_capacity(reader, FILE_READ_CHUNK))
}

/// After a delete: removes the directory tree at `path` if only empty directories remain in it,
/// then its ancestors that became empty.
pub(crate) async fn prune_tree(root: &Path, path: &ArtifactPath) {
    let (root, target) = (root.to_path_buf(), fs_path(root, path));
    run_blocking(move || {
        if std::fs::symlink_metadata(&target).is_ok_and(|meta| meta.is_dir()) {
            prune_below(&target);
        }
        prune_upwards(&root, target);
    })
    .await;
}

/// After a failed write: removes the directories created for the staged file, if still empty.
pub(crate) async fn prune_ancestors(root: &Path, path: &ArtifactPath) {
    let (root, target) = (root.to_path_buf(), fs_path(root, path));
    run_blocking(move || {
        if let Some(parent) = target.parent() {
            prune_upwards(&root, parent.to_path_buf());
        }
    })
    .await;
}

/// Pruning is cosmetic, so a failure (a panicked blocking task included) is only logged.
async fn run_blocking(work: impl FnOnce() + Send + 'static) {
    if let Err(e) = tokio::task::spawn_blocking(work).await {
        tracing::warn!(error = %e, "pruning empty artifact directories failed");
    }
}

/// Depth-first so a directory holding only empty directories goes too. `remove_dir` refuses
/// non-empty directories, which is what keeps files (and concurrent uploads) safe; entry file
/// types do not follow symlinks, so a link to a directory elsewhere is never descended.
fn prune_below(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            let child = entry.path();
            prune_below(&child);
            let _ = std::fs::remove_dir(&child);
        }
    }
}

/// A concurrent upload that loses its freshly created directory here recreates it: its staging
/// file is opened in a loop that creates missing parents.
fn prune_upwards(root: &Path, mut dir: PathBuf) {
    while dir != root && dir.starts_with(root) {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(_) => return,
        }
        if !dir.pop() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_staging_name;

    #[test]
    fn staging_names_are_recognised() {
        for staged in ["a#1", "a#b#12", "#0"] {
            assert!(is_staging_name(staged), "{staged}");
        }
        for plain in ["a", "a#", "a#b", "a#1b", "a#1#b", "#"] {
            assert!(!is_staging_name(plain), "{plain}");
        }
    }
}
