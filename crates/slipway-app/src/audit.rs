//! Reading and verifying the audit trail. Entries are written by the mutating use-cases
//! themselves (see [`App::audited`](crate::App)); this module pages through them and walks the
//! hash chain, and counts refused requests.
//!
//! Refusals at the door (401, 403) are what a flood is made of: one entry each let a single
//! client append hundreds of rows a second. They are counted per client address and kind in
//! windows of [`REFUSAL_WINDOW`]: the first refusal of a window is written at once, as before,
//! and the rest of the window becomes one `request.denied.summary` entry (how many, when, the
//! names they used) when the window closes, at the next flush or at shutdown. The log then grows
//! by at most two entries per address, kind and window, and every refusal is still counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use slipway_core::audit::{AuditEvent, AuditRecord, ChainBreak, ChainVerifier, Outcome};
use slipway_core::ports::AuditFilter;
use slipway_core::{Error, Result};

use crate::{App, max_results, now_ms};

/// How long refusals from one address are counted before their summary is written.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Windows (address and kind) counted separately at once; refusals from further addresses are
/// counted together under "other", so many addresses cannot make the table grow without bound.
const REFUSAL_ADDRESSES: usize = 10_000;
/// Distinct names kept per summary.
const REFUSAL_NAMES: usize = 20;

/// Why a request was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// No, malformed or wrong credentials (401).
    Unauthenticated,
    /// Authenticated, but not allowed (403).
    PermissionDenied,
}

impl RefusalKind {
    fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Unauthenticated => "unauthenticated",
            RefusalKind::PermissionDenied => "permission_denied",
        }
    }
}

/// One address (or all the others) and kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RefusalKey {
    /// `None`: the addresses beyond [`REFUSAL_ADDRESSES`].
    client: Option<IpAddr>,
    kind: RefusalKind,
}

/// The refusals of one key in the current window, after the one written out.
#[derive(Debug)]
struct RefusalWindow {
    opened: Instant,
    /// Refusals counted but not written one by one.
    count: u64,
    first_ms: i64,
    last_ms: i64,
    names: Vec<String>,
    names_truncated: bool,
}

impl RefusalWindow {
    fn new(opened: Instant) -> RefusalWindow {
        RefusalWindow {
            opened,
            count: 0,
            first_ms: 0,
            last_ms: 0,
            names: Vec::new(),
            names_truncated: false,
        }
    }

    fn count(&mut self, name: &str, at_ms: i64) {
        if self.count == 0 {
            self.first_ms = at_ms;
        }
        self.count += 1;
        self.last_ms = at_ms;
        if !self.names.iter().any(|known| known == name) {
            if self.names.len() < REFUSAL_NAMES {
                self.names.push(name.to_owned());
            } else {
                self.names_truncated = true;
            }
        }
    }

    /// The summary entry of a closed window.
    fn summary(&self, key: RefusalKey, window: Duration) -> AuditEvent {
        let client = key
            .client
            .map_or_else(|| "other".to_owned(), |client| client.to_string());
        let actor = match self.names.as_slice() {
            [only] if !self.names_truncated => only.clone(),
            _ => "several".to_owned(),
        };
        AuditEvent {
            actor,
            action: "request.denied.summary".to_owned(),
            resource: format!("client:{client}"),
            request_id: None,
            outcome: Outcome::Denied,
            summary: json!({
                "kind": key.kind.as_str(),
                "client": client,
                "count": self.count,
                "first_ms": self.first_ms,
                "last_ms": self.last_ms,
                "window_s": window.as_secs(),
                "names": self.names,
                "names_truncated": self.names_truncated,
            })
            .to_string(),
        }
    }
}

/// What to do with one refusal.
#[derive(Debug)]
struct Counted {
    /// The first of its window: write it out as it is.
    write: bool,
    /// The summary of the key's previous window, which this refusal closed.
    closed: Option<AuditEvent>,
}

/// The refusal windows of every address; shared by every request.
pub(crate) struct Refusals {
    window: Duration,
    max_addresses: usize,
    windows: Mutex<HashMap<RefusalKey, RefusalWindow>>,
}

impl Refusals {
    pub(crate) fn new() -> Refusals {
        Refusals::with_limits(REFUSAL_WINDOW, REFUSAL_ADDRESSES)
    }

    fn with_limits(window: Duration, max_addresses: usize) -> Refusals {
        Refusals {
            window,
            max_addresses,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn count(
        &self,
        client: IpAddr,
        kind: RefusalKind,
        name: &str,
        now: Instant,
        now_ms: i64,
    ) -> Counted {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = RefusalKey {
            client: Some(client),
            kind,
        };
        if !windows.contains_key(&key) && windows.len() >= self.max_addresses {
            key.client = None;
        }
        if let Some(open) = windows.get_mut(&key)
            && now.saturating_duration_since(open.opened) < self.window
        {
            open.count(name, now_ms);
            return Counted {
                write: false,
                closed: None,
            };
        }
        let closed = windows
            .insert(key, RefusalWindow::new(now))
            .filter(|closed| closed.count > 0)
            .map(|closed| closed.summary(key, self.window));
        Counted {
            write: true,
            closed,
        }
    }

    /// Takes the windows that have closed (all of them when `everything`), returning the
    /// summaries to write: windows with nothing beyond their first refusal need none.
    fn close(&self, now: Instant, everything: bool) -> Vec<AuditEvent> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut summaries = Vec::new();
        windows.retain(|key, open| {
            let closing = everything || now.saturating_duration_since(open.opened) >= self.window;
            if closing && open.count > 0 {
                summaries.push(open.summary(*key, self.window));
            }
            !closing
        });
        summaries
    }
}

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
    /// Records a request refused at the door, by the caller of this handle (a claimed or
    /// authenticated name) from `client`: written at once if it is the first of its window,
    /// otherwise counted into the window's summary.
    pub async fn record_refusal(
        &self,
        client: IpAddr,
        kind: RefusalKind,
        resource: impl Into<String>,
        reason: &str,
        client_request_id: Option<&str>,
    ) -> Result<()> {
        let counted =
            self.refusals
                .count(client, kind, &self.caller().actor, Instant::now(), now_ms());
        if let Some(closed) = counted.closed {
            self.store.append_audit(closed).await?;
        }
        if counted.write {
            self.record_refused_request(resource, reason, client_request_id)
                .await?;
        }
        Ok(())
    }

    /// Writes the summaries of the refusal windows that have closed, or of all of them on
    /// shutdown (`everything`). Returns how many entries were written.
    pub async fn flush_refusals(&self, everything: bool) -> Result<usize> {
        let summaries = self.refusals.close(Instant::now(), everything);
        let written = summaries.len();
        for summary in summaries {
            self.store.append_audit(summary).await?;
        }
        Ok(written)
    }

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

    /// Entries matching `filter` before `before_seq` (from the newest when `None`), newest
    /// first, at most `limit` (up to [`AUDIT_PAGE_MAX`]): what a person reading the log wants.
    pub async fn audit_log_newest(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        self.store
            .read_audit_newest(filter, before_seq, limit.clamp(1, AUDIT_PAGE_MAX))
            .await
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

    fn address(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn summary_of(event: &AuditEvent) -> serde_json::Value {
        serde_json::from_str(&event.summary).unwrap()
    }

    #[test]
    fn refusals_are_written_once_per_window_and_counted() {
        let refusals = Refusals::with_limits(Duration::from_secs(60), 100);
        let start = Instant::now();
        let kind = RefusalKind::Unauthenticated;
        let first = refusals.count(address(1), kind, "claimed:a", start, 1_000);
        assert!(first.write && first.closed.is_none());
        for (i, name) in ["claimed:a", "claimed:b", "claimed:a"].iter().enumerate() {
            let later = start + Duration::from_secs(i as u64 + 1);
            let counted = refusals.count(address(1), kind, name, later, 2_000 + i as i64);
            assert!(!counted.write && counted.closed.is_none());
        }
        // Another kind, another address: windows of their own.
        assert!(
            refusals
                .count(address(1), RefusalKind::PermissionDenied, "u", start, 1_000)
                .write
        );
        assert!(refusals.count(address(2), kind, "x", start, 1_000).write);
        // The window's end: the next refusal is written and closes the summary.
        let next = refusals.count(
            address(1),
            kind,
            "claimed:c",
            start + Duration::from_secs(60),
            9_000,
        );
        assert!(next.write);
        let closed = next.closed.unwrap();
        assert_eq!(closed.action, "request.denied.summary");
        assert_eq!(closed.resource, "client:10.0.0.1");
        assert_eq!(closed.actor, "several");
        let summary = summary_of(&closed);
        assert_eq!(summary["count"], 3);
        assert_eq!(summary["first_ms"], 2_000);
        assert_eq!(summary["last_ms"], 2_002);
        assert_eq!(
            summary["names"],
            serde_json::json!(["claimed:a", "claimed:b"])
        );
        // Nothing beyond the first refusal needs no summary.
        assert!(refusals.close(start, true).is_empty());
    }

    #[test]
    fn refusals_from_too_many_addresses_are_counted_together() {
        let refusals = Refusals::with_limits(Duration::from_secs(60), 2);
        let now = Instant::now();
        let kind = RefusalKind::Unauthenticated;
        let mut written = 0;
        for last in 1..=50 {
            for _ in 0..3 {
                written += usize::from(refusals.count(address(last), kind, "n", now, 1).write);
            }
        }
        // Two addresses of their own, one "other" bucket: one entry each.
        assert_eq!(written, 3);
        assert_eq!(refusals.windows.lock().unwrap().len(), 3);
        let summaries = refusals.close(now, true);
        let counts: u64 = summaries
            .iter()
            .map(|event| summary_of(event)["count"].as_u64().unwrap())
            .sum();
        assert_eq!(counts as usize + written, 150);
        assert!(
            summaries
                .iter()
                .any(|event| event.resource == "client:other")
        );
        // Names beyond the bound are noted, not kept.
        let refusals = Refusals::with_limits(Duration::from_secs(60), 2);
        for i in 0..=REFUSAL_NAMES + 1 {
            refusals.count(address(1), kind, &format!("n{i}"), now, 1);
        }
        let summary = summary_of(&refusals.close(now, true)[0]);
        assert_eq!(summary["names"].as_array().unwrap().len(), REFUSAL_NAMES);
        assert_eq!(summary["names_truncated"], true);
    }

    #[test]
    fn page_tokens_are_sequence_numbers() {
        assert_eq!(page_token(None).unwrap(), 0);
        assert_eq!(page_token(Some("")).unwrap(), 0);
        assert_eq!(page_token(Some("42")).unwrap(), 42);
        assert!(page_token(Some("-1")).is_err());
        assert!(page_token(Some("abc")).is_err());
    }
}
