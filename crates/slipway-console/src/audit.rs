//! The audit trail (admins): newest first, filtered by resource, actor and time, and the
//! hash chain verified on request.

use askama::Template;
use axum::extract::Query;
use serde::Deserialize;
use slipway_core::Error;
use slipway_core::auth::Action;
use slipway_core::ports::AuditFilter;

use crate::session::Viewer;
use crate::view::{Nav, encode, time};
use crate::{PageError, PageResult, page};

const PAGE: usize = 100;

struct EntryRow {
    seq: i64,
    time: String,
    actor: String,
    action: String,
    resource: String,
    outcome: String,
    summary: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    resource: String,
    actor: String,
    since: String,
    entries: Vec<EntryRow>,
    older_href: Option<String>,
    verified: Option<(bool, String)>,
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    resource: Option<String>,
    actor: Option<String>,
    /// A span back from now (24h, 7d) or an RFC 3339 time.
    since: Option<String>,
    before: Option<i64>,
    verify: Option<String>,
}

fn since_ms(raw: &str) -> Result<Option<i64>, Error> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let now = slipway_app::now_ms();
    if let Ok(span) = humantime::parse_duration(raw) {
        return Ok(Some(now - span.as_millis() as i64));
    }
    humantime::parse_rfc3339_weak(raw)
        .map(|at| {
            Some(
                at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            )
        })
        .map_err(|_| {
            Error::invalid(format!(
                "since '{raw}': give a span such as 24h or 7d, or a time such as 2026-12-01T00:00:00Z"
            ))
        })
}

pub async fn trail(viewer: Viewer, Query(query): Query<AuditQuery>) -> PageResult {
    let nav = viewer.nav("audit");
    let fail = |e| PageError::new(&nav, e);
    if !viewer.may(Action::Admin) {
        return Err(fail(Error::permission_denied(format!(
            "the audit trail is for admins; user '{}' is {}",
            viewer.principal.name,
            viewer.principal.role.as_str()
        ))));
    }
    let resource = query.resource.unwrap_or_default();
    let actor = query.actor.unwrap_or_default();
    let since = query.since.unwrap_or_default();
    let filter = AuditFilter {
        resource: Some(resource.trim().to_owned()).filter(|r| !r.is_empty()),
        actor: Some(actor.trim().to_owned()).filter(|a| !a.is_empty()),
        since_ms: since_ms(&since).map_err(fail)?,
    };
    let records = viewer
        .app
        .audit_log_newest(&filter, query.before, PAGE)
        .await
        .map_err(fail)?;
    let older_href = (records.len() == PAGE).then(|| {
        format!(
            "/audit?resource={}&actor={}&since={}&before={}",
            encode(&resource),
            encode(&actor),
            encode(&since),
            records.last().map_or(0, |r| r.seq)
        )
    });
    let verified = match query.verify.as_deref() {
        Some(_) => {
            let report = viewer.app.verify_audit(|_| {}).await.map_err(fail)?;
            Some(match report.broken {
                None => (
                    true,
                    format!(
                        "intact: {} entries verified up to #{} ({})",
                        report.checked,
                        report.head_seq,
                        &report.head_hash[..report.head_hash.len().min(16)]
                    ),
                ),
                Some(chain_break) => (
                    false,
                    format!(
                        "BROKEN at {chain_break} ({} entries verified before it)",
                        report.checked
                    ),
                ),
            })
        }
        None => None,
    };
    let entries = records
        .into_iter()
        .map(|r| EntryRow {
            seq: r.seq,
            time: time(r.time_ms),
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            outcome: r.outcome.as_str().to_owned(),
            summary: {
                let mut s = r.summary;
                if s.len() > 400 {
                    let mut cut = 400;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                    s.push('…');
                }
                s
            },
        })
        .collect();
    Ok(page(&AuditPage {
        nav,
        resource,
        actor,
        since,
        entries,
        older_href,
        verified,
    }))
}
