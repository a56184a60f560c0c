//! Reading and verifying the audit trail. Entries are written by the mutating use-cases
//! themselves (see [`App::audited`](crate::App)); this module pages through them and walks the
//! hash chain.

use slipway_core::audit::{AuditRecord, ChainBreak, ChainVerifier};
use slipway_core::ports::AuditFilter;
use slipway_core::{Error, Result};

use crate::{App, max_results};

pub const AUDIT_PAGE_DEFAULT: usize = 100;
pub const AUDIT_PAGE_MAX: usize = 10_000;
/// Entries read per query while verifying or exporting: bounds memory on any log size.
const WALK_BATCH: usize = 5_000;

/// One page of entries and where the next one starts.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    pub next_page_token: Option<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked before the first break (all of them when intact).
    pub checked: u64,
    pub head_seq: i64,
    pub head_hash: String,
    pub broken: Option<ChainBreak>,
}

fn page_token(raw: Option<&str>) -> Result<i64> {
    match raw.filter(|raw| !raw.is_empty()) {
        None => Ok(0),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| Error::invalid(format!("invalid page token '{raw}'"))),
    }
}

impl App {
    /// Entries matching `filter`, oldest first.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        requested_max: Option<i64>,
        page_token_raw: Option<&str>,
    ) -> Result<AuditPage> {
        let max = max_results(requested_max, AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX)?;
        let after = page_token(page_token_raw)?;
        let mut entries = self.store.read_audit(filter, after, max + 1).await?;
        let next_page_token = if entries.len() > max {
            entries.truncate(max);
            entries.last().map(|entry| entry.seq.to_string())
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_page_token,
        })
    }

    /// Calls `each` with every entry up to `until_seq` in sequence order, a batch at a time.
    /// Entries appended while the walk runs are past `until_seq` and left out, so a live server
    /// does not look like a truncated log.
    pub async fn walk_audit(
        &self,
        until_seq: i64,
        mut each: impl FnMut(&AuditRecord) -> Result<()>,
    ) -> Result<()> {
        let mut after = 0;
        loop {
            let batch = self
                .store
                .read_audit(&AuditFilter::default(), after, WALK_BATCH)
                .await?;
            for record in &batch {
                if record.seq > until_seq {
                    return Ok(());
                }
                each(record)?;
            }
            match batch.last() {
                Some(last) if batch.len() == WALK_BATCH => after = last.seq,
                _ => return Ok(()),
            }
        }
    }

    /// Walks the whole chain and reports the first entry that does not verify. `progress`
    /// hears the number of entries checked so far.
    pub async fn verify_audit(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
        let (head_seq, head_hash) = self.store.audit_head().await?;
        let mut verifier = ChainVerifier::default();
        let mut broken = None;
        let mut checked = 0u64;
        let walked = self
            .walk_audit(head_seq, |record| {
                if let Err(chain_break) = verifier.check(record) {
                    broken = Some(chain_break);
                    // Stop at the first break: later entries link to a broken one.
                    return Err(Error::internal_msg("stop"));
                }
                checked += 1;
                if checked.is_multiple_of(10_000) {
                    progress(checked);
                }
                Ok(())
            })
            .await;
        if broken.is_none() {
            walked?;
            if let Err(chain_break) = verifier.finish(head_seq, &head_hash) {
                broken = Some(chain_break);
            }
        }
        progress(checked);
        Ok(VerifyReport {
            checked,
            head_seq,
            head_hash,
            broken,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_sequence_numbers() {
        assert_eq!(page_token(None).unwrap(), 0);
        assert_eq!(page_token(Some("")).unwrap(), 0);
        assert_eq!(page_token(Some("42")).unwrap(), 42);
        assert!(page_token(Some("-1")).is_err());
        assert!(page_token(Some("abc")).is_err());
    }
}
