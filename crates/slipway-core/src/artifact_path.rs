//! A relative artifact path that cannot escape the artifact root.

use std::fmt;

use crate::error::{Error, Result};

const MAX_SEGMENT_BYTES: usize = 200;
const MAX_PATH_BYTES: usize = 2048;

/// `/`-separated, relative, with no empty, `.` or `..` segments and no NUL or backslash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim_matches('/');
        let bad = |why: &str| {
            Error::invalid(format!(
                "Invalid artifact path '{}': {why}",
                crate::validate::truncate_for_message(raw)
            ))
        };
        if trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        if trimmed.contains('\\') || trimmed.contains('\0') {
            return Err(bad("it contains a backslash or NUL byte"));
        }
        if trimmed
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(bad("it must not contain '..', '.' or empty segments"));
        }
        // File systems refuse names over 255 bytes and paths over 4 KiB; the store also needs
        // room for a staging suffix. Refusing here makes that a 400, not a storage failure.
        if trimmed
            .split('/')
            .any(|segment| segment.len() > MAX_SEGMENT_BYTES)
        {
            return Err(bad(&format!(
                "each path segment may be at most {MAX_SEGMENT_BYTES} bytes"
            )));
        }
        if trimmed.len() > MAX_PATH_BYTES {
            return Err(bad(&format!("it may be at most {MAX_PATH_BYTES} bytes")));
        }
        Ok(ArtifactPath(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn join(&self, relative: &str) -> Result<Self> {
        let relative = relative.trim_matches('/');
        if relative.is_empty() {
            return Ok(self.clone());
        }
        ArtifactPath::parse(&format!("{}/{}", self.0, relative))
    }

    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &ArtifactPath) -> bool {
        self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_root() {
        for bad in ["", "/", "..", "a/../b", "a//b", "./a", "a\\b", "a/\0"] {
            assert!(ArtifactPath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ArtifactPath::parse("/1/abc/artifacts/").unwrap().as_str(),
            "1/abc/artifacts"
        );
        let root = ArtifactPath::parse("1/abc").unwrap();
        assert!(ArtifactPath::parse("1/abc/x").unwrap().starts_with(&root));
        assert!(!ArtifactPath::parse("1/abcd").unwrap().starts_with(&root));
        assert!(root.join("../x").is_err());
        assert_eq!(root.join("m/x.txt").unwrap().file_name(), "x.txt");
        assert!(ArtifactPath::parse(&"x".repeat(200)).is_ok());
        assert!(ArtifactPath::parse(&"x".repeat(201)).is_err());
        assert!(ArtifactPath::parse(&vec!["d".repeat(100); 25].join("/")).is_err());
    }
}
