//! The audit trail: what happened, who did it, and a hash chain that makes any later edit,
//! deletion, reordering or insertion of entries detectable.
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} || "\n" || canonical(entry_n))`, with 64 zeros
//! before the first entry. The canonical encoding is the JSON array of the entry's fields in a
//! fixed order, so it is the same on every platform and backend. The store appends entries in
//! the transaction of the change they describe and refuses `UPDATE`/`DELETE` on the table;
//! [`verify`] is what catches someone who goes around the store.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash "before" the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How the audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// The caller was refused (401/403, or a protected alias without approval).
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(raw: &str) -> Outcome {
        if raw == "denied" {
            Outcome::Denied
        } else {
            Outcome::Ok
        }
    }
}

/// An entry as a use-case describes it; the store adds the sequence number, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The user name, `anonymous` without authentication, `cli:<os user>` for admin commands.
    pub actor: String,
    /// Dotted verb, e.g. `runs.log_batch`, `registry.set_alias`, `users.create`.
    pub action: String,
    /// `kind:id`, e.g. `run:3f2a...`, `registered_model:fraud`, `user:alice`.
    pub resource: String,
    pub request_id: Option<String>,
    pub outcome: Outcome,
    /// Canonical JSON: what changed (`before`/`after`), never a secret value.
    pub summary: String,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub request_id: Option<String>,
    pub outcome: Outcome,
    pub summary: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The part of an entry's canonical encoding that does not depend on its place in the chain:
/// the JSON array of its fields after the sequence number and time, without the opening
/// bracket. Writers compute it before they queue for the chain, so the chain's single writer
/// only hashes.
pub fn canonical_tail(event: &AuditEvent) -> String {
    let array = serde_json::json!([
        event.actor,
        event.action,
        event.resource,
        event.request_id,
        event.outcome.as_str(),
        event.summary,
    ])
    .to_string();
    array[1..].to_owned()
}

/// The hash of an entry given its predecessor's and its [`canonical_tail`]: SHA-256 over
/// `prev_hash`, a newline and the JSON array `[seq, time_ms, actor, action, resource,
/// request_id, outcome, summary]`.
pub fn entry_hash_with_tail(prev_hash: &str, seq: i64, time_ms: i64, tail: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(format!("\n[{seq},{time_ms},").as_bytes());
    hasher.update(tail.as_bytes());
    hex::encode(hasher.finalize())
}

/// The hash of an entry given its predecessor's.
pub fn entry_hash(prev_hash: &str, seq: i64, time_ms: i64, event: &AuditEvent) -> String {
    entry_hash_with_tail(prev_hash, seq, time_ms, &canonical_tail(event))
}

impl AuditRecord {
    pub fn new(seq: i64, time_ms: i64, event: AuditEvent, prev_hash: String, hash: String) -> Self {
        AuditRecord {
            seq,
            time_ms,
            actor: event.actor,
            action: event.action,
            resource: event.resource,
            request_id: event.request_id,
            outcome: event.outcome,
            summary: event.summary,
            prev_hash,
            hash,
        }
    }

    pub fn event(&self) -> AuditEvent {
        AuditEvent {
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            request_id: self.request_id.clone(),
            outcome: self.outcome,
            summary: self.summary.clone(),
        }
    }
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first entry that does not verify (for a missing tail: the head's sequence number).
    pub seq: i64,
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.reason)
    }
}

/// Walks the chain one entry at a time, in sequence order, remembering only the last hash.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry. Gaps (a deleted entry), repeats or reordering (a sequence number
    /// out of place), a wrong link (an inserted or deleted entry) and a wrong hash (an edited
    /// entry) are each reported at the first entry where they show.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let fail = |reason: String| {
            Err(ChainBreak {
                seq: record.seq,
                reason,
            })
        };
        if record.seq != self.expected_seq {
            return fail(format!(
                "expected entry {} next, found entry {} (entries were deleted, inserted or renumbered)",
                self.expected_seq, record.seq
            ));
        }
        if record.prev_hash != self.prev_hash {
            return fail(
                "its link to the previous entry does not match (an entry before it was changed, removed or inserted)"
                    .to_owned(),
            );
        }
        let computed = entry_hash(
            &record.prev_hash,
            record.seq,
            record.time_ms,
            &record.event(),
        );
        if computed != record.hash {
            return fail("its contents do not match its hash (the entry was edited)".to_owned());
        }
        self.prev_hash = computed;
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// After the last entry: the chain must end where the store's head says it does, or
    /// entries were cut off the end.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> Result<u64, ChainBreak> {
        let last = self.expected_seq - 1;
        if last != head_seq || (head_seq > 0 && self.prev_hash != head_hash) {
            return Err(ChainBreak {
                seq: head_seq,
                reason: format!(
                    "the log ends at entry {last} but its head records entry {head_seq} (entries were removed from the end, or the head was changed)"
                ),
            });
        }
        Ok(self.checked)
    }

    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let event = AuditEvent {
                    actor: "alice".into(),
                    action: "runs.log_batch".into(),
                    resource: format!("run:{seq}"),
                    request_id: Some(format!("req-{seq}")),
                    outcome: Outcome::Ok,
                    summary: format!("{{\"metrics\":{seq}}}"),
                };
                let hash = entry_hash(&prev, seq, 1000 + seq, &event);
                let record = AuditRecord::new(seq, 1000 + seq, event, prev.clone(), hash.clone());
                prev = hash;
                record
            })
            .collect()
    }

    fn verify(records: &[AuditRecord], head: (i64, &str)) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::default();
        for record in records {
            verifier.check(record)?;
        }
        verifier.finish(head.0, head.1)
    }

    #[test]
    fn the_hash_covers_the_canonical_array() {
        let event = AuditEvent {
            actor: "a\"b".into(),
            action: "x.y".into(),
            resource: "run:1".into(),
            request_id: None,
            outcome: Outcome::Denied,
            summary: "{}".into(),
        };
        let canonical = r#"[7,1000,"a\"b","x.y","run:1",null,"denied","{}"]"#;
        let mut hasher = Sha256::new();
        hasher.update(format!("{GENESIS_HASH}\n{canonical}").as_bytes());
        assert_eq!(
            entry_hash(GENESIS_HASH, 7, 1000, &event),
            hex::encode(hasher.finalize())
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        let head = records.last().unwrap().hash.clone();
        assert_eq!(verify(&records, (5, &head)), Ok(5));
        assert_eq!(verify(&[], (0, GENESIS_HASH)), Ok(0));
    }

    #[test]
    fn every_kind_of_tampering_names_the_first_bad_entry() {
        let records = chain(5);
        let head = records.last().unwrap().hash.clone();
        let head = (5, head.as_str());

        let mut edited = records.clone();
        edited[2].summary = "{\"metrics\":999}".into();
        assert_eq!(verify(&edited, head).unwrap_err().seq, 3);

        let mut actor = records.clone();
        actor[1].actor = "mallory".into();
        assert_eq!(verify(&actor, head).unwrap_err().seq, 2);

        let mut deleted = records.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, head).unwrap_err().seq, 3);

        let mut reordered = records.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered, head).unwrap_err().seq, 3);

        // Swapping contents but keeping the sequence numbers in place.
        let mut swapped = records.clone();
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = AuditRecord { seq: 2, ..b };
        swapped[2] = AuditRecord { seq: 3, ..a };
        assert_eq!(verify(&swapped, head).unwrap_err().seq, 2);

        let mut inserted = records.clone();
        let mut extra = records[1].clone();
        extra.seq = 3;
        inserted.insert(2, extra);
        for (index, record) in inserted.iter_mut().enumerate().skip(3) {
            record.seq = index as i64 + 1;
        }
        assert_eq!(verify(&inserted, head).unwrap_err().seq, 3);

        let truncated = &records[..3];
        assert_eq!(verify(truncated, head).unwrap_err().seq, 5);

        let mut rehashed = records.clone();
        rehashed[4].hash = "f".repeat(64);
        assert_eq!(verify(&rehashed, head).unwrap_err().seq, 5);
    }
}
