//! Page tokens. MLflow's SQL store hands out base64 of `{"offset": N}`; we keep that shape so a
//! token taken from MLflow keeps working, and reject anything else with a clear 400.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageToken {
    pub offset: u64,
}

impl PageToken {
    pub fn encode(self) -> String {
        STANDARD.encode(format!("{{\"offset\": {}}}", self.offset))
    }

    /// An empty token is the first page.
    pub fn decode(raw: Option<&str>) -> Result<Self> {
        let Some(raw) = raw.filter(|raw| !raw.is_empty()) else {
            return Ok(PageToken::default());
        };
        let bad = || {
            Error::invalid(format!(
                "Invalid page token, could not base64-decode or parse it: '{}'",
                crate::validate::truncate_for_message(raw)
            ))
        };
        let bytes = STANDARD
            .decode(raw.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(raw.trim()))
            .map_err(|_| bad())?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        // Offsets end up in SQL `OFFSET`, a signed 64-bit integer.
        let offset = value
            .get("offset")
            .and_then(serde_json::Value::as_u64)
            .filter(|offset| i64::try_from(*offset).is_ok())
            .ok_or_else(bad)?;
        Ok(PageToken { offset })
    }
}

/// One page of results and the token for the next, present only when more rows exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from a query that fetched `max_results + 1` rows starting at `offset`: the
    /// extra row only tells that another page exists.
    pub fn from_overfetch(mut items: Vec<T>, offset: u64, max_results: usize) -> Self {
        let next_page_token = if items.len() > max_results {
            items.truncate(max_results);
            Some(
                PageToken {
                    offset: offset
                        .saturating_add(max_results as u64)
                        .min(i64::MAX as u64),
                }
                .encode(),
            )
        } else {
            None
        };
        Page {
            items,
            next_page_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_mlflow_encoding() {
        assert_eq!(PageToken { offset: 2 }.encode(), "eyJvZmZzZXQiOiAyfQ==");
        assert_eq!(
            PageToken::decode(Some("eyJvZmZzZXQiOiAxfQ==")).unwrap(),
            PageToken { offset: 1 }
        );
    }

    #[test]
    fn garbage_tokens_are_invalid_parameters() {
        let too_large = STANDARD.encode(format!("{{\"offset\": {}}}", u64::MAX - 1));
        for raw in [
            "not base64!",
            "aGVsbG8=",
            "eyJvZmZzZXQiOiAtMX0=",
            too_large.as_str(),
        ] {
            assert!(matches!(
                PageToken::decode(Some(raw)),
                Err(Error::InvalidParameter(_))
            ));
        }
        assert_eq!(PageToken::decode(None).unwrap(), PageToken::default());
        assert_eq!(PageToken::decode(Some("")).unwrap(), PageToken::default());
    }

    #[test]
    fn overfetch_sets_the_token_only_when_more_rows_exist() {
        let page = Page::from_overfetch(vec![1, 2, 3], 10, 2);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            PageToken::decode(page.next_page_token.as_deref())
                .unwrap()
                .offset,
            12
        );
        assert!(
            Page::from_overfetch(vec![1, 2], 0, 2)
                .next_page_token
                .is_none()
        );
    }
}
