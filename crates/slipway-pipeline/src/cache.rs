//! Cache keys and the content-addressed store of step results.
//!
//! A step's key is a digest of everything that decides what it writes: its command with the
//! parameters filled in, the environment the pipeline declares, the paths it writes, and the
//! content of every input (a folder by the digests of all its files). A stored result names its
//! outputs' files by content digest; the files themselves are objects stored once by digest,
//! so two results that share a file share its object.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PipelineError;

/// Changes whenever what goes into a key changes, so old results are not reused by mistake.
const KEY_VERSION: &str = "slipway-pipeline-cache-v1";

/// One file of an input or an output: its path relative to the pipeline's folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What a step wrote, as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub key: String,
    pub step: String,
    /// Each declared output path with the files under it.
    pub outputs: BTreeMap<String, Vec<FileDigest>>,
    /// The step's stdout and stderr, stored as an object.
    pub log: Option<FileDigest>,
    pub duration_ms: u64,
    pub finished_ms: i64,
}

/// Where results and objects are kept: a local folder ([`LocalCache`]), or the server's
/// artifact store through the binary.
pub trait CacheStore: Send + Sync {
    fn get_result(&self, key: &str) -> Result<Option<StepResult>, PipelineError>;
    fn put_result(&self, result: &StepResult) -> Result<(), PipelineError>;
    /// Stores `file` as the object `sha256` (nothing to do when it is stored already).
    fn put_object(&self, sha256: &str, file: &Path) -> Result<(), PipelineError>;
    /// Writes the object `sha256` to `to` (whole, or not at all).
    fn get_object(&self, sha256: &str, to: &Path) -> Result<(), PipelineError>;
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> PipelineError {
    move |e| PipelineError::Io(format!("{context}: {e}"))
}

/// SHA-256 of a file's content, read in 1 MiB blocks.
pub fn file_sha256(path: &Path) -> Result<(String, u64), PipelineError> {
    let mut file = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(io(format!("reading {}", path.display())))?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hash.update(&buffer[..read]);
    }
    Ok((hex::encode(hash.finalize()), size))
}

/// Every file under `path` (or `path` itself), sorted, with its digest. None when nothing is
/// there.
pub fn digest_path(root: &Path, path: &str) -> Result<Option<Vec<FileDigest>>, PipelineError> {
    let relative = path.trim_end_matches('/');
    let full = root.join(relative);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("reading {}", full.display()))(e)),
    };
    let mut files = Vec::new();
    if meta.is_dir() {
        let mut stack = vec![full.clone()];
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))?
            {
                let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
                let kind = entry
                    .file_type()
                    .map_err(io(format!("reading {}", entry.path().display())))?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    files.push(entry.path());
                }
                // Symbolic links and special files are not content: left out.
            }
        }
    } else if meta.is_file() {
        files.push(full.clone());
    }
    let mut digests = Vec::with_capacity(files.len());
    for file in files {
        let (sha256, size) = file_sha256(&file)?;
        let rel = file
            .strip_prefix(root)
            .map_err(|_| PipelineError::Io(format!("{} is outside the pipeline", file.display())))?
            .to_string_lossy()
            .replace('\\', "/");
        digests.push(FileDigest {
            path: rel,
            sha256,
            size,
        });
    }
    digests.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(digests))
}

/// What goes into a step's key, kept so a run can say why a step ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyParts<'a> {
    pub version: &'static str,
    pub command: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub outputs: &'a [String],
    /// Input path -> its files' digests.
    pub inputs: &'a BTreeMap<String, Vec<FileDigest>>,
}

/// The digest of a step's key parts.
pub fn cache_key(
    command: &str,
    env: &BTreeMap<String, String>,
    outputs: &[String],
    inputs: &BTreeMap<String, Vec<FileDigest>>,
) -> String {
    let parts = KeyParts {
        version: KEY_VERSION,
        command,
        env,
        outputs,
        inputs,
    };
    // Serializing a struct of maps and vectors cannot fail.
    let text = serde_json::to_vec(&parts).unwrap_or_default();
    hex::encode(Sha256::digest(&text))
}

/// The digest of a set of inputs, for lineage (a dataset's digest).
pub fn files_digest(files: &[FileDigest]) -> String {
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.path.as_bytes());
        hash.update([0]);
        hash.update(file.sha256.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// A cache in a local folder: `results/KEY.json` and `objects/AB/SHA256`.
pub struct LocalCache {
    root: PathBuf,
}

fn check_hex(what: &str, text: &str) -> Result<(), PipelineError> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(PipelineError::Invalid(format!(
            "{what} '{text}' is not a SHA-256"
        )))
    }
}

/// Writes through a temporary file and a rename, so a reader sees the old file or the whole
/// new one.
fn write_atomically(
    to: &Path,
    from: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), PipelineError> {
    let parent = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let temp = parent.join(format!(
        ".{}.{}.tmp",
        to.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    from(&temp).map_err(io(format!("writing {}", temp.display())))?;
    std::fs::rename(&temp, to).map_err(io(format!("writing {}", to.display())))
}

impl LocalCache {
    pub fn new(root: impl Into<PathBuf>) -> LocalCache {
        LocalCache { root: root.into() }
    }

    fn object(&self, sha256: &str) -> PathBuf {
        self.root.join("objects").join(&sha256[..2]).join(sha256)
    }
}

impl CacheStore for LocalCache {
    fn get_result(&self, key: &str) -> Result<Option<StepResult>, PipelineError> {
        check_hex("cache key", key)?;
        let path = self.root.join("results").join(format!("{key}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                PipelineError::Io(format!("{} is not a step result: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    fn put_result(&self, result: &StepResult) -> Result<(), PipelineError> {
        check_hex("cache key", &result.key)?;
        let path = self
            .root
            .join("results")
            .join(format!("{}.json", result.key));
        let bytes = serde_json::to_vec_pretty(result)
            .map_err(|e| PipelineError::Io(format!("encoding a step result: {e}")))?;
        write_atomically(&path, |temp| std::fs::write(temp, &bytes))
    }

    fn put_object(&self, sha256: &str, file: &Path) -> Result<(), PipelineError> {
        check_hex("object", sha256)?;
        let object = self.object(sha256);
        if object.exists() {
            return Ok(());
        }
        write_atomically(&object, |temp| std::fs::copy(file, temp).map(|_| ()))
    }

    fn get_object(&self, sha256: &str, to: &Path) -> Result<(), PipelineError> {
        check_hex("object", sha256)?;
        let object = self.object(sha256);
        if !object.exists() {
            return Err(PipelineError::Io(format!(
                "the cache has lost object {sha256} (of {}): run with --force on its step",
                to.display()
            )));
        }
        // An object is checked against its name before it replaces anything: a damaged or
        // swapped file in the cache must not become a step's output.
        let (found, _) = file_sha256(&object)?;
        if found != sha256 {
            return Err(PipelineError::Io(format!(
                "the cache's object {sha256} holds other content ({found}): delete {} and run with --force",
                object.display()
            )));
        }
        write_atomically(to, |temp| std::fs::copy(&object, temp).map(|_| ()))
    }
}

/// A near store (a local folder) in front of a far one (shared through the server): reads try
/// the near one first and keep what the far one had; writes go to both. The far store is a
/// convenience: when it fails (the server is slow or away) a read is a miss and a write is
/// skipped with a warning, and a step that ran is not failed for it.
pub struct Layered<N, F> {
    pub near: N,
    pub far: F,
}

impl<N: CacheStore, F: CacheStore> CacheStore for Layered<N, F> {
    fn get_result(&self, key: &str) -> Result<Option<StepResult>, PipelineError> {
        if let Some(found) = self.near.get_result(key)? {
            return Ok(Some(found));
        }
        let found = match self.far.get_result(key) {
            Ok(found) => found,
            Err(error) => {
                eprintln!(
                    "warning: the shared cache could not be read ({error}); running the step"
                );
                None
            }
        };
        if let Some(result) = &found {
            self.near.put_result(result)?;
        }
        Ok(found)
    }

    fn put_result(&self, result: &StepResult) -> Result<(), PipelineError> {
        self.near.put_result(result)?;
        if let Err(error) = self.far.put_result(result) {
            eprintln!(
                "warning: step '{}': its result is cached here but not shared ({error})",
                result.step
            );
        }
        Ok(())
    }

    fn put_object(&self, sha256: &str, file: &Path) -> Result<(), PipelineError> {
        self.near.put_object(sha256, file)?;
        if let Err(error) = self.far.put_object(sha256, file) {
            eprintln!(
                "warning: {} is cached here but not shared ({error})",
                file.display()
            );
        }
        Ok(())
    }

    fn get_object(&self, sha256: &str, to: &Path) -> Result<(), PipelineError> {
        if self.near.get_object(sha256, to).is_ok() {
            return Ok(());
        }
        self.far.get_object(sha256, to)?;
        self.near.put_object(sha256, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_its_files_and_a_key_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("raw/sub")).unwrap();
        std::fs::write(dir.path().join("raw/a.csv"), "x\n1\n").unwrap();
        std::fs::write(dir.path().join("raw/sub/b.csv"), "x\n2\n").unwrap();
        let files = digest_path(dir.path(), "raw/").unwrap().unwrap();
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["raw/a.csv", "raw/sub/b.csv"]
        );
        assert_eq!(files[0].size, 4);
        assert_eq!(digest_path(dir.path(), "missing").unwrap(), None);
        let env = BTreeMap::new();
        let key = |files: &Vec<FileDigest>| {
            cache_key(
                "python x.py",
                &env,
                &["out/".into()],
                &BTreeMap::from([("raw/".to_owned(), files.clone())]),
            )
        };
        let before = key(&files);
        assert_eq!(
            before,
            key(&digest_path(dir.path(), "raw").unwrap().unwrap())
        );
        std::fs::write(dir.path().join("raw/sub/b.csv"), "x\n3\n").unwrap();
        assert_ne!(
            before,
            key(&digest_path(dir.path(), "raw/").unwrap().unwrap())
        );
    }

    #[test]
    fn a_layered_cache_fills_the_near_store_from_the_far_one() {
        let dir = tempfile::tempdir().unwrap();
        let far = LocalCache::new(dir.path().join("far"));
        let file = dir.path().join("out.bin");
        std::fs::write(&file, b"shared").unwrap();
        let (sha, _) = file_sha256(&file).unwrap();
        far.put_object(&sha, &file).unwrap();
        let result = StepResult {
            key: "c".repeat(64),
            step: "s".into(),
            outputs: BTreeMap::new(),
            log: None,
            duration_ms: 0,
            finished_ms: 0,
        };
        far.put_result(&result).unwrap();
        let layered = Layered {
            near: LocalCache::new(dir.path().join("near")),
            far,
        };
        assert_eq!(
            layered.get_result(&result.key).unwrap(),
            Some(result.clone())
        );
        let back = dir.path().join("back.bin");
        layered.get_object(&sha, &back).unwrap();
        // Both are now in the near store: the far one is not needed again.
        let near = LocalCache::new(dir.path().join("near"));
        assert_eq!(near.get_result(&result.key).unwrap(), Some(result));
        near.get_object(&sha, &dir.path().join("again.bin"))
            .unwrap();
    }

    /// A shared store that is away.
    struct Away;

    impl CacheStore for Away {
        fn get_result(&self, _: &str) -> Result<Option<StepResult>, PipelineError> {
            Err(PipelineError::Io("connection refused".into()))
        }
        fn put_result(&self, _: &StepResult) -> Result<(), PipelineError> {
            Err(PipelineError::Io("connection refused".into()))
        }
        fn put_object(&self, _: &str, _: &Path) -> Result<(), PipelineError> {
            Err(PipelineError::Io("connection refused".into()))
        }
        fn get_object(&self, _: &str, _: &Path) -> Result<(), PipelineError> {
            Err(PipelineError::Io("connection refused".into()))
        }
    }

    #[test]
    fn a_shared_store_that_is_away_costs_sharing_not_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let layered = Layered {
            near: LocalCache::new(dir.path().join("near")),
            far: Away,
        };
        let key = "d".repeat(64);
        assert_eq!(
            layered.get_result(&key).unwrap(),
            None,
            "a miss, not an error"
        );
        let file = dir.path().join("out.bin");
        std::fs::write(&file, b"x").unwrap();
        let (sha, _) = file_sha256(&file).unwrap();
        layered.put_object(&sha, &file).unwrap();
        let result = StepResult {
            key: key.clone(),
            step: "s".into(),
            outputs: BTreeMap::new(),
            log: None,
            duration_ms: 0,
            finished_ms: 0,
        };
        layered.put_result(&result).unwrap();
        assert_eq!(layered.get_result(&key).unwrap(), Some(result), "kept here");
    }

    #[test]
    fn the_local_cache_keeps_results_and_objects() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path().join("cache"));
        let file = dir.path().join("model.bin");
        std::fs::write(&file, b"weights").unwrap();
        let (sha, _) = file_sha256(&file).unwrap();
        cache.put_object(&sha, &file).unwrap();
        cache.put_object(&sha, &file).unwrap();
        let back = dir.path().join("restored/model.bin");
        cache.get_object(&sha, &back).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), b"weights");
        let key = "a".repeat(64);
        assert_eq!(cache.get_result(&key).unwrap(), None);
        let result = StepResult {
            key: key.clone(),
            step: "train".into(),
            outputs: BTreeMap::new(),
            log: None,
            duration_ms: 5,
            finished_ms: 1,
        };
        cache.put_result(&result).unwrap();
        assert_eq!(cache.get_result(&key).unwrap(), Some(result));
        assert!(cache.get_result("../../etc/passwd").is_err());
        let lost = cache.get_object(&"b".repeat(64), &back).unwrap_err();
        assert!(lost.to_string().contains("--force"), "{lost}");
        std::fs::write(cache.object(&sha), b"tampered").unwrap();
        let damaged = cache.get_object(&sha, &back).unwrap_err();
        assert!(damaged.to_string().contains("other content"), "{damaged}");
        assert_eq!(std::fs::read(&back).unwrap(), b"weights", "left as it was");
    }
}
