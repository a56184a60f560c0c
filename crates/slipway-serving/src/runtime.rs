//! Loading ONNX Runtime's shared library, once per process.
//!
//! Where the library comes from, in order: an explicit path, `ORT_DYLIB_PATH`, then the place
//! `scripts/fetch-onnxruntime.sh` puts it (`~/.cache/slipway-onnxruntime/<version>/`). ort
//! 2.0.0-rc.15 speaks the 1.31 C API, so anything older is refused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime release the setup script fetches and the tests run against.
pub const ONNXRUNTIME_VERSION: &str = "1.32.0";

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime is not installed: no file at {path}. Run scripts/fetch-onnxruntime.sh \
         (it downloads libonnxruntime {ONNXRUNTIME_VERSION} from the onnxruntime wheel on PyPI), \
         or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31 or newer"
    )]
    Missing { path: PathBuf },
    #[error(
        "could not load ONNX Runtime from {path}: {reason}. slipway needs libonnxruntime 1.31 or \
         newer; run scripts/fetch-onnxruntime.sh or point ORT_DYLIB_PATH at a newer library"
    )]
    Unusable { path: PathBuf, reason: String },
}

/// The loaded library's environment; models are created from it.
#[derive(Clone)]
pub struct Runtime {
    environment: ort::environment::Environment,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &Runtime::library_path())
            .finish()
    }
}

static LOADED: OnceLock<Result<(PathBuf, ort::environment::Environment), RuntimeError>> =
    OnceLock::new();

/// Where the library is looked for when no path is given.
pub fn default_library_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("SLIPWAY_ORT_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/slipway-onnxruntime"))
        })
        .unwrap_or_else(|| PathBuf::from(".cache/slipway-onnxruntime"));
    cache
        .join(ONNXRUNTIME_VERSION)
        .join(format!("libonnxruntime.so.{ONNXRUNTIME_VERSION}"))
}

impl Runtime {
    /// Loads the library (the first call wins; later calls report the first one's outcome,
    /// since a process can load ONNX Runtime only once).
    pub fn load(path: Option<&Path>) -> Result<Runtime, RuntimeError> {
        let outcome = LOADED.get_or_init(|| {
            let path = path.map_or_else(default_library_path, Path::to_path_buf);
            if !path.is_file() {
                return Err(RuntimeError::Missing { path });
            }
            let unusable = |reason: String| RuntimeError::Unusable {
                path: path.clone(),
                reason,
            };
            let environment = ort::init_from(&path)
                .map_err(|error| unusable(error.to_string()))?
                .with_name("slipway")
                .build()
                .map_err(|error| unusable(error.to_string()))?;
            Ok((path, environment))
        });
        match outcome {
            Ok((_, environment)) => Ok(Runtime {
                environment: environment.clone(),
            }),
            Err(error) => Err(error.clone()),
        }
    }

    pub(crate) fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// The library this process loaded, if it did.
    pub fn library_path() -> Option<&'static Path> {
        LOADED
            .get()
            .and_then(|outcome| outcome.as_ref().ok())
            .map(|(path, _)| path.as_path())
    }
}
