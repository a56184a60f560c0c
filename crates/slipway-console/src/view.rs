//! What every page shares: the navigation bar's state and formatting.

use slipway_core::auth::{Action, Principal};
pub use slipway_core::delivery::human_span as span;

/// The navigation bar: who is signed in, and where the page sits.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The signed-in user, when the server runs with --auth.
    pub user: Option<String>,
    pub role: String,
    /// The section the page belongs to (`runs`, `models`, ...).
    pub active: &'static str,
    pub may_approve: bool,
    pub is_admin: bool,
}

impl Nav {
    pub fn new(principal: &Principal, auth: bool, active: &'static str) -> Nav {
        Nav {
            user: auth.then(|| principal.name.clone()),
            role: principal.role.as_str().to_owned(),
            active,
            may_approve: principal.allows(Action::Approve, None),
            is_admin: principal.allows(Action::Admin, None),
        }
    }

    /// The navigation of a page shown to nobody in particular (the sign-in page).
    pub fn anonymous() -> Nav {
        Nav {
            user: None,
            role: String::new(),
            active: "",
            may_approve: false,
            is_admin: false,
        }
    }

    pub fn is(&self, section: &str) -> bool {
        self.active == section
    }
}

/// Epoch milliseconds as `2026-12-05 20:01:44` (UTC).
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "—".to_owned();
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text.trim_end_matches('Z').replacen('T', " ", 1)
}

/// A number as people read it: integers whole, others to four significant digits.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == value.trunc() && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 10) as usize;
    format!("{value:.decimals$}")
}

/// JSON to put inside `<script type="application/json">`: no `<`, `>` or `&` left raw, so no
/// value can close the element or open another.
pub fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A query-string component, percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(1234.5678), "1235");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(time(0), "—");
        assert_eq!(time(1_764_964_904_000), "2025-12-05 20:01:44");
        assert_eq!(span(1_500), "1.5s");
        assert_eq!(span(3 * 3_600_000), "3.0h");
        assert_eq!(encode("metrics.rmse < 1"), "metrics.rmse%20%3C%201");
        let hostile = serde_json::json!({"v": "</script><script>alert(1)</script>"});
        let text = script_json(&hostile);
        assert!(!text.contains('<'), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            hostile
        );
    }
}
