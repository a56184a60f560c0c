//! MLflow's limits and naming rules, enforced once at the edge of every use-case.
//!
//! The numbers are MLflow's (`mlflow/utils/validation.py`), because clients chunk their requests
//! by them and tests written for MLflow expect the same refusals.

use crate::error::{Error, Result};

pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
pub const MAX_TAG_VALUE_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_REGISTERED_MODEL_NAME_LENGTH: usize = 500;
pub const MAX_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_DATASET_NAME_LENGTH: usize = 500;
pub const MAX_DATASET_DIGEST_LENGTH: usize = 36;
pub const MAX_DATASET_SOURCE_LENGTH: usize = 65_535;
pub const MAX_DATASET_SCHEMA_LENGTH: usize = 1_048_575;
pub const MAX_DATASET_PROFILE_LENGTH: usize = 16_777_215;
pub const MAX_INPUT_TAG_VALUE_LENGTH: usize = 500;
pub const MAX_DESCRIPTION_LENGTH: usize = 65_535;

/// Shortens user input quoted back in an error, so a megabyte key does not become a megabyte
/// error body.
pub fn truncate_for_message(raw: &str) -> String {
    const LIMIT: usize = 120;
    if raw.chars().count() <= LIMIT {
        raw.to_owned()
    } else {
        let head: String = raw.chars().take(LIMIT).collect();
        format!("{head}...")
    }
}

fn invalid_value(field: &str, value: &str, why: &str) -> Error {
    Error::invalid(format!(
        "Invalid value {} for parameter '{field}' supplied: {why}",
        serde_json::Value::String(truncate_for_message(value))
    ))
}

pub fn missing(field: &str) -> Error {
    Error::invalid(format!(
        "Missing value for required parameter '{field}'. See the API docs for more information about request parameters."
    ))
}

/// Metric, param and tag keys: MLflow treats them as file names in some stores, so they may only
/// use a safe alphabet and must not normalise to another path.
pub fn entity_key(field: &str, key: &str) -> Result<()> {
    let alphabet_ok = key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/'));
    if !alphabet_ok {
        return Err(invalid_value(
            field,
            key,
            "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/).",
        ));
    }
    if !is_normalized_relative_path(key) {
        return Err(invalid_value(
            field,
            key,
            "Names may be treated as files in certain cases, and must not resolve to other names when treated as such. Names must not be empty, start with '/', or contain '..', '//' or '/./'.",
        ));
    }
    if key.len() > MAX_ENTITY_KEY_LENGTH {
        return Err(Error::invalid(format!(
            "'{field}' exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters"
        )));
    }
    Ok(())
}

/// True when `posixpath.normpath(key) == key` and the result neither is `.` nor climbs up.
fn is_normalized_relative_path(key: &str) -> bool {
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
        return false;
    }
    key.split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// Registered model names, experiment names and aliases must be non-empty and bounded.
pub fn name(field: &str, value: &str, max_len: usize) -> Result<()> {
    if value.is_empty() {
        return Err(missing(field));
    }
    if value.chars().count() > max_len {
        return Err(Error::invalid(format!(
            "'{field}' exceeds the maximum length of {max_len} characters"
        )));
    }
    Ok(())
}

pub fn max_len(field: &str, value: &str, max_len: usize) -> Result<()> {
    if value.chars().count() > max_len {
        return Err(Error::invalid(format!(
            "'{field}' exceeds the maximum length of {max_len} characters"
        )));
    }
    Ok(())
}

/// MLflow truncates over-long param and tag values silently instead of failing; clients log
/// long values (whole configs) and expect that to work.
pub fn truncate_value(mut value: String, max_chars: usize) -> String {
    if let Some((byte_index, _)) = value.char_indices().nth(max_chars) {
        value.truncate(byte_index);
    }
    value
}

/// Aliases: like MLflow, a bare `v<digits>` or `latest` is reserved because `models:/name@v3`
/// would be ambiguous with version references.
pub fn alias(value: &str) -> Result<()> {
    name("alias", value, 255)?;
    let lower = value.to_ascii_lowercase();
    let looks_like_version =
        lower.len() > 1 && lower.starts_with('v') && lower[1..].bytes().all(|b| b.is_ascii_digit());
    if lower == "latest" || looks_like_version {
        return Err(Error::invalid(format!(
            "'{value}' alias name (case insensitive) is not allowed: 'latest' and 'v<number>' are reserved"
        )));
    }
    if !value
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(invalid_value(
            "alias",
            value,
            "Aliases may only contain alphanumerics, underscores (_) and dashes (-).",
        ));
    }
    Ok(())
}

/// Model version numbers arrive as decimal strings.
pub fn version_number(raw: &str) -> Result<i64> {
    match raw.trim().parse::<i64>() {
        Ok(version) if version >= 1 => Ok(version),
        _ => Err(Error::invalid(format!(
            "Parameter 'version' must be an integer, got '{}'.",
            truncate_for_message(raw)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_key(key: &str, ok: bool) {
        assert_eq!(entity_key("key", key).is_ok(), ok, "key {key:?}");
    }

    #[test]
    fn entity_keys_follow_mlflow_rules() {
        check_key("loss", true);
        check_key("val loss/epoch:1", true);
        check_key("a.b-c_d", true);
        check_key("", false);
        check_key("/abs", false);
        check_key("a/../b", false);
        check_key("..", false);
        check_key("a//b", false);
        check_key("a/./b", false);
        check_key("trailing/", false);
        check_key("semi;colon", false);
        check_key(&"k".repeat(250), true);
        check_key(&"k".repeat(251), false);
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate_value("ééé".into(), 2), "éé");
        assert_eq!(truncate_value("abc".into(), 10), "abc");
    }

    #[test]
    fn reserved_aliases_are_refused() {
        assert!(alias("champion").is_ok());
        assert!(alias("latest").is_err());
        assert!(alias("V12").is_err());
        assert!(alias("v").is_ok());
        assert!(alias("").is_err());
        assert!(alias("has space").is_err());
    }
}
