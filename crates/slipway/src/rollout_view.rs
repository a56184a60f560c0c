//! What `slipway deploy status` shows of a deployment and its rollout: lines of text made from
//! the API's JSON and the time, with no IO, so the rendering is tested without a server.
//! `deploy.rs` draws them: redrawn in place on a terminal, only the changes when piped.
//!
//! The frame answers, top to bottom, what a person following a rollout asks: what runs, which
//! step and how much traffic, how long it has been and how long it may still take, what the
//! analysis measured rule by rule, what to run next when the rollout waits for a person or
//! for test traffic, and what happened lately. It stays within a terminal's height.

use serde_json::Value;
use slipway_core::deployment::human_ms;

/// Everything a frame is made from.
pub struct View<'a> {
    /// The deployment as `GET /deployments/NAME` answers it (with `traffic` and `window`).
    pub deployment: &'a Value,
    /// Its events, oldest first.
    pub events: &'a [Value],
    pub now_ms: i64,
    /// The server's URL, for the commands the frame suggests.
    pub server: &'a str,
    /// How many of the latest events to list.
    pub recent_events: usize,
    pub color: bool,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `ms` ago, or until, as people read it.
fn age(now_ms: i64, then_ms: i64) -> String {
    human_ms(now_ms.saturating_sub(then_ms).max(0) as u64)
}

fn plural(count: u64, one: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {one}s")
    }
}

/// A number with at most `digits` decimals and no trailing zeros: 2, 1.12, 0.0032.
fn number(value: f64, digits: usize) -> String {
    let fixed = format!("{value:.digits$}");
    if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        fixed
    }
}

fn percent(value: f64) -> String {
    format!("{} %", number(value * 100.0, 2))
}

impl View<'_> {
    fn paint(&self, text: &str, result: &str) -> String {
        let style = console::Style::new().force_styling(self.color);
        let style = match result {
            "pass" | "succeeded" => style.green(),
            "fail" | "rolled_back" | "aborted" => style.red(),
            "not_enough_samples" | "inconclusive" | "awaiting_approval" | "paused" => {
                style.yellow()
            }
            "not_applicable" => style.dim(),
            _ => style,
        };
        style.apply_to(text).to_string()
    }

    /// The frame, one entry per line.
    pub fn lines(&self) -> Vec<String> {
        let d = self.deployment;
        let name = text(&d["name"]);
        let model = match d["alias"].as_str() {
            Some(alias) => format!("{}@{alias}", text(&d["model_name"])),
            None => text(&d["model_name"]),
        };
        let mut lines = vec![format!(
            "deployment {name}: {model}, stable version {}",
            text(&d["stable_version"])
        )];
        let rollout = &d["rollout"];
        if rollout.is_null() {
            lines.push("no rollout yet".to_owned());
        } else {
            let state = rollout["state"]["state"].as_str().unwrap_or("unknown");
            let active = matches!(state, "progressing" | "awaiting_approval" | "paused");
            lines.push(self.rollout_line(rollout, state, active));
            if active {
                self.stage_lines(&name, rollout, state, &mut lines);
                self.window_lines(rollout, &mut lines);
            } else if let Some(reason) = rollout["state"]["reason"].as_str() {
                lines.push(format!("  why: {reason}"));
            }
        }
        self.event_lines(&mut lines);
        lines
    }

    fn rollout_line(&self, rollout: &Value, state: &str, active: bool) -> String {
        let label = self.paint(&state.replace('_', " "), state);
        let started = rollout["started_ms"].as_i64().unwrap_or(self.now_ms);
        let when = if active {
            format!("for {}", age(self.now_ms, started))
        } else {
            let ended = rollout["ended_ms"].as_i64().unwrap_or(started);
            format!(
                "{} ago, after {}",
                age(self.now_ms, ended),
                human_ms(ended.saturating_sub(started).max(0) as u64)
            )
        };
        format!(
            "rollout {}: {} of version {}, {label} {when}",
            text(&rollout["id"]),
            text(&rollout["strategy"]["kind"]),
            text(&rollout["candidate_version"]),
        )
    }

    /// The stages as the server compiles them (see `Strategy::stages`): weight, mirror, ms.
    fn stages(rollout: &Value) -> Vec<(u64, u64, u64)> {
        let strategy = &rollout["strategy"];
        let num = |v: &Value| v.as_u64().unwrap_or(0);
        match strategy["kind"].as_str() {
            Some("canary") => strategy["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|step| (num(&step["weight"]), 0, num(&step["duration_ms"])))
                .collect(),
            Some("blue_green") => {
                let mut stages = vec![(
                    0,
                    num(&strategy["mirror_percent"]),
                    num(&strategy["preview_ms"]),
                )];
                if num(&strategy["bake_ms"]) > 0 {
                    stages.push((100, 0, num(&strategy["bake_ms"])));
                }
                stages
            }
            Some("shadow") => vec![(
                0,
                num(&strategy["mirror_percent"]),
                num(&strategy["duration_ms"]),
            )],
            _ => Vec::new(),
        }
    }

    fn stage_lines(&self, name: &str, rollout: &Value, state: &str, lines: &mut Vec<String>) {
        let stages = Self::stages(rollout);
        let index = rollout["stage"].as_u64().unwrap_or(0) as usize;
        let Some(&(weight, mirror, duration_ms)) = stages.get(index) else {
            return;
        };
        let live = self.deployment["traffic"]["weight"]
            .as_u64()
            .unwrap_or(weight);
        let kind = rollout["strategy"]["kind"].as_str().unwrap_or_default();
        let mut split = format!("candidate {live}% of live traffic");
        if live < weight {
            split.push_str(&format!(
                " (step says {weight}%; capped until the promotion is approved)"
            ));
        }
        if mirror > 0 {
            split.push_str(&format!(", {mirror}% mirrored"));
        }
        if kind == "blue_green" && index == 0 {
            split.push_str(", plus test requests");
        }
        let next = match stages.get(index + 1) {
            Some((next, _, _)) => format!("next {next}%"),
            None => "next: promote".to_owned(),
        };
        lines.push(format!(
            "  step {} of {}: {split}; {next}",
            index + 1,
            stages.len()
        ));

        let started = rollout["stage_started_ms"].as_i64().unwrap_or(self.now_ms);
        let elapsed = self.now_ms.saturating_sub(started).max(0) as u64;
        let deadline_ms = rollout["progress_deadline_ms"].as_u64().unwrap_or(600_000);
        let on_deadline = rollout["on_deadline"].as_str().unwrap_or("rollback");
        let passed = rollout["stage_passed"].as_bool().unwrap_or(false);
        let timing = if state != "progressing" {
            format!("  {} in this step", human_ms(elapsed))
        } else if elapsed < duration_ms {
            format!(
                "  {} in this step, {} left{}",
                human_ms(elapsed),
                human_ms(duration_ms - elapsed),
                if passed {
                    " (its analysis has passed)"
                } else {
                    ""
                }
            )
        } else {
            let limit = duration_ms.saturating_add(deadline_ms);
            format!(
                "  {} in this step: its {} are over, waiting for an analysis that passes; {} left before the progress deadline ({on_deadline})",
                human_ms(elapsed),
                human_ms(duration_ms),
                human_ms(limit.saturating_sub(elapsed)),
            )
        };
        lines.push(timing);

        let server = self.server.trim_end_matches('/');
        match state {
            "awaiting_approval" => {
                let id = text(&rollout["state"]["promotion_id"]);
                lines.push(format!(
                    "  every step passed; waiting for approval of promotion request {id}: run `slipway promote approve {id}` (or `slipway promote reject {id} --reason ...`)"
                ));
            }
            "paused" => {
                lines.push(format!("  paused: {}", text(&rollout["state"]["reason"])));
                lines.push(format!(
                    "  next: `slipway deploy promote {name}` to promote now, or `slipway deploy rollback {name}`"
                ));
            }
            _ => {}
        }
        let window = &self.deployment["window"];
        let tested = window["stats"]["candidate"]["requests"]
            .as_u64()
            .unwrap_or(0);
        if state == "progressing" && kind == "blue_green" && index == 0 && mirror == 0 {
            lines.push(format!(
                "  the preview answers only test requests ({} so far): send them with `curl -H 'x-slipway-variant: candidate' -H 'Content-Type: application/json' -d @input.json {server}/deployments/{name}/invocations`, or promote at once with `slipway deploy promote {name}`",
                tested
            ));
        }
    }

    fn window_lines(&self, rollout: &Value, lines: &mut Vec<String>) {
        let window = &self.deployment["window"];
        if window.is_null() {
            lines.push(
                "  no measurements yet: the controller opens a window within a second".into(),
            );
            return;
        }
        let stats = &window["stats"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let mut line = format!(
            "  window {}: stable {}, {}; candidate {}, {}",
            human_ms(
                self.now_ms
                    .saturating_sub(window["started_ms"].as_i64().unwrap_or(self.now_ms))
                    .max(0) as u64
            ),
            plural(n(&stats["stable"]["requests"]), "request"),
            plural(n(&stats["stable"]["errors"]), "error"),
            plural(n(&stats["candidate"]["requests"]), "request"),
            plural(n(&stats["candidate"]["errors"]), "error"),
        );
        if n(&stats["candidate"]["diverted"]) > 0 {
            line.push_str(&format!(
                ", {} diverted by its open circuit",
                n(&stats["candidate"]["diverted"])
            ));
        }
        if n(&stats["rescored"]) > 0 || n(&stats["rescore_skipped"]) > 0 {
            line.push_str(&format!(
                "; {} re-scored on stable ({} agreed)",
                n(&stats["rescored"]),
                n(&stats["rescore_agreed"])
            ));
        }
        if n(&stats["compared"]) > 0 {
            line.push_str(&format!(
                "; {} mirrored rows compared ({} agreed)",
                n(&stats["compared"]),
                n(&stats["agreed"])
            ));
        }
        lines.push(line);
        let analysis = &window["last_analysis"];
        if analysis.is_null() {
            let interval = rollout["rules"]["interval_ms"].as_u64().unwrap_or(0);
            lines.push(format!(
                "  first analysis after {} of traffic",
                human_ms(interval)
            ));
            return;
        }
        let verdict = &analysis["verdict"];
        let label = verdict["verdict"].as_str().unwrap_or("unknown");
        let why = match label {
            "inconclusive" => verdict["reason"]
                .as_str()
                .and_then(|r| r.split(':').next())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            "fail" => format!(" ({})", text(&verdict["rule"])),
            _ => String::new(),
        };
        lines.push(format!(
            "  analysis {} ago: {}{why}",
            age(
                self.now_ms,
                analysis["at_ms"].as_i64().unwrap_or(self.now_ms)
            ),
            self.paint(label, label),
        ));
        for m in analysis["measurements"].as_array().into_iter().flatten() {
            lines.push(format!("    {}", self.rule_line(m, &rollout["rules"])));
        }
    }

    /// One rule: its value with units, its threshold, and its samples against what it needs.
    fn rule_line(&self, m: &Value, rules: &Value) -> String {
        let rule = m["rule"].as_str().unwrap_or_default();
        let result = m["result"].as_str().unwrap_or_default();
        let mark = self.paint(
            match result {
                "pass" => "ok  ",
                "fail" => "FAIL",
                "not_enough_samples" => "wait",
                "not_applicable" => "n/a ",
                _ => "?   ",
            },
            result,
        );
        let value = |unit: fn(f64) -> String| m["candidate"].as_f64().map_or("-".to_owned(), unit);
        let threshold = m["threshold"].as_f64().unwrap_or(0.0);
        let percentile = rule.split('_').nth(1).unwrap_or("p99");
        let (label, measured, noun, needed) = match rule {
            "error_rate" => (
                "error rate".to_owned(),
                format!("{} (max {})", value(percent), percent(threshold)),
                "candidate requests",
                &rules["min_samples"],
            ),
            r if r.starts_with("latency_") && r.ends_with("_ratio") => {
                // The candidate's own figure is in `detail`; the ratio floors both at 1 ms.
                let sides = m["stable"]
                    .as_f64()
                    .map(|stable| format!(", stable {percentile} {} ms", number(stable, 2)))
                    .unwrap_or_default();
                (
                    format!("latency {percentile} ratio"),
                    format!(
                        "{} (max {}){sides}",
                        value(|v| number(v, 2)),
                        number(threshold, 2)
                    ),
                    "answered requests a side",
                    &rules["min_samples"],
                )
            }
            r if r.starts_with("latency_") => (
                format!("latency {percentile}"),
                format!(
                    "{} (max {} ms)",
                    value(|v| format!("{} ms", number(v, 2))),
                    number(threshold, 2)
                ),
                "answered candidate requests",
                &rules["min_samples"],
            ),
            "prediction_shift" => {
                let p = m["p_value"]
                    .as_f64()
                    .map(|p| format!(", p={}", number(p, 4)))
                    .unwrap_or_default();
                let basis = match m["basis"].as_str() {
                    Some("same_rows") => " on rows both answered",
                    Some("live") => " on live rows",
                    _ => "",
                };
                (
                    "prediction shift".to_owned(),
                    format!(
                        "{} (max {} JS){p}{basis}",
                        value(|v| format!("{} JS", number(v, 3))),
                        number(threshold, 3)
                    ),
                    "rows a side",
                    &rules["min_samples"],
                )
            }
            "agreement" => (
                "mirrored agreement".to_owned(),
                format!("{} (min {})", value(percent), percent(threshold)),
                "mirrored rows",
                &rules["min_samples"],
            ),
            "rescore_agreement" => (
                "re-score agreement".to_owned(),
                format!("{} (min {})", value(percent), percent(threshold)),
                "re-scored rows",
                &rules["rescore_min_samples"],
            ),
            other => (
                other.replace('_', " "),
                format!(
                    "{} (threshold {})",
                    value(|v| number(v, 4)),
                    number(threshold, 4)
                ),
                "samples",
                &rules["min_samples"],
            ),
        };
        if result == "not_applicable" {
            let why = m["detail"].as_str().unwrap_or_default();
            return format!(
                "{mark} {label}: {}",
                why.strip_prefix("not applicable: ").unwrap_or(why)
            );
        }
        format!(
            "{mark} {label} {measured} — {} of {} {noun}",
            text(&m["samples"]),
            text(needed)
        )
    }

    fn event_lines(&self, lines: &mut Vec<String>) {
        if self.events.is_empty() || self.recent_events == 0 {
            return;
        }
        lines.push("recent events:".to_owned());
        let start = self.events.len().saturating_sub(self.recent_events);
        for event in &self.events[start..] {
            lines.push(format!("  {}", self.event_line(event)));
        }
    }

    /// One event in a line: its age, kind and what it says (an analysis by its verdict, a run
    /// of them with its count and span).
    pub fn event_line(&self, event: &Value) -> String {
        let kind = event["kind"].as_str().unwrap_or_default();
        let time = event["time_ms"].as_i64().unwrap_or(self.now_ms);
        let last = event["last_time_ms"].as_i64().unwrap_or(time);
        let count = event["count"].as_i64().unwrap_or(1);
        let detail = &event["detail"];
        let when = if count > 1 {
            format!(
                "{} ago ×{count}, until {} ago",
                age(self.now_ms, time),
                age(self.now_ms, last)
            )
        } else {
            format!("{} ago", age(self.now_ms, time))
        };
        let says = match kind {
            "analysis" => {
                let verdict = &detail["verdict"];
                let label = verdict["verdict"].as_str().unwrap_or_default();
                let why = verdict["reason"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| {
                        verdict["rule"]
                            .as_str()
                            .map(|rule| format!("{rule} failed"))
                    })
                    .unwrap_or_default();
                if why.is_empty() {
                    self.paint(label, label)
                } else {
                    format!("{}: {why}", self.paint(label, label))
                }
            }
            "stage" => format!(
                "step {}: candidate {}% of live traffic",
                detail["stage"].as_u64().map_or(0, |s| s + 1),
                text(&detail["live_weight"])
            ),
            "rollout_started" => format!(
                "version {} over {} ({})",
                text(&detail["candidate_version"]),
                text(&detail["stable_version"]),
                text(&detail["strategy"]["kind"])
            ),
            "promoted" => format!(
                "version {} is stable ({})",
                text(&detail["to_version"]),
                text(&detail["why"])
            ),
            "rolled_back" | "aborted" | "paused" => text(&detail["reason"]),
            "awaiting_approval" => format!(
                "promotion request {} waits for approval",
                text(&detail["promotion_id"])
            ),
            _ => {
                let mut d = detail.to_string();
                if d.len() > 100 {
                    let cut = (0..=97).rev().find(|i| d.is_char_boundary(*i)).unwrap_or(0);
                    d.truncate(cut);
                    d.push_str("...");
                }
                d
            }
        };
        format!("{when}  {kind}: {says}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn canary(state: Value, stage: u64, stage_started_ms: i64, window: Value) -> Value {
        let weight = [5, 25, 100][stage as usize];
        json!({
            "name": "fraud",
            "model_name": "fraud",
            "alias": "production",
            "stable_version": "1",
            "traffic": { "weight": weight, "mirror": 0 },
            "window": window,
            "rollout": {
                "id": 3,
                "candidate_version": "2",
                "strategy": { "kind": "canary", "steps": [
                    { "weight": 5, "duration_ms": 120_000 },
                    { "weight": 25, "duration_ms": 300_000 },
                    { "weight": 100, "duration_ms": 60_000 },
                ]},
                "rules": { "interval_ms": 30_000, "min_samples": 100, "rescore_min_samples": 20 },
                "state": state,
                "stage": stage,
                "stage_started_ms": stage_started_ms,
                "stage_passed": false,
                "started_ms": NOW - 601_812,
                "progress_deadline_ms": 600_000,
                "on_deadline": "rollback",
            },
        })
    }

    fn window() -> Value {
        json!({
            "started_ms": NOW - 70_000,
            "stats": {
                "stable": { "requests": 950, "errors": 0 },
                "candidate": { "requests": 340, "errors": 1, "diverted": 0 },
                "rescored": 60, "rescore_agreed": 59, "rescore_skipped": 0, "compared": 0,
            },
            "last_analysis": {
                "at_ms": NOW - 12_000,
                "verdict": { "verdict": "inconclusive", "reason": "waiting for traffic: prediction_shift: 80 of 100 rows a side needed" },
                "measurements": [
                    { "rule": "error_rate", "candidate": 0.0029411, "threshold": 0.01, "samples": 340, "result": "pass" },
                    { "rule": "latency_p90_ratio", "candidate": 1.12, "stable": 2.5, "threshold": 1.5, "samples": 340, "result": "pass" },
                    { "rule": "prediction_shift", "candidate": null, "threshold": 0.1, "samples": 80, "result": "not_enough_samples" },
                    { "rule": "rescore_agreement", "candidate": 0.98333, "threshold": 0.9, "samples": 60, "p_value": 1.0, "result": "pass" },
                ],
            },
        })
    }

    fn view<'a>(deployment: &'a Value, events: &'a [Value]) -> View<'a> {
        View {
            deployment,
            events,
            now_ms: NOW,
            server: "http://127.0.0.1:5000/",
            recent_events: 4,
            color: false,
        }
    }

    #[test]
    fn a_canary_step_shows_weights_times_and_every_rule_with_units() {
        let deployment = canary(
            json!({ "state": "progressing" }),
            1,
            NOW - 130_000,
            window(),
        );
        let events = [
            json!({ "kind": "stage", "time_ms": NOW - 130_000, "count": 1, "detail": { "stage": 1, "live_weight": 25 } }),
            json!({ "kind": "analysis", "time_ms": NOW - 100_000, "last_time_ms": NOW - 12_000, "count": 4,
                    "detail": { "verdict": { "verdict": "inconclusive", "reason": "waiting for traffic: prediction_shift: 80 of 100" } } }),
        ];
        let lines = view(&deployment, &events).lines();
        assert_eq!(
            lines,
            [
                "deployment fraud: fraud@production, stable version 1",
                "rollout 3: canary of version 2, progressing for 10m 1s",
                "  step 2 of 3: candidate 25% of live traffic; next 100%",
                "  2m 10s in this step, 2m 50s left",
                "  window 1m 10s: stable 950 requests, 0 errors; candidate 340 requests, 1 error; 60 re-scored on stable (59 agreed)",
                "  analysis 12s ago: inconclusive (waiting for traffic)",
                "    ok   error rate 0.29 % (max 1 %) — 340 of 100 candidate requests",
                "    ok   latency p90 ratio 1.12 (max 1.5), stable p90 2.5 ms — 340 of 100 answered requests a side",
                "    wait prediction shift - (max 0.1 JS) — 80 of 100 rows a side",
                "    ok   re-score agreement 98.33 % (min 90 %) — 60 of 20 re-scored rows",
                "recent events:",
                "  2m 10s ago  stage: step 2: candidate 25% of live traffic",
                "  1m 40s ago ×4, until 12s ago  analysis: inconclusive: waiting for traffic: prediction_shift: 80 of 100",
            ]
        );
    }

    #[test]
    fn a_step_past_its_duration_says_how_long_until_the_deadline() {
        let mut deployment = canary(json!({ "state": "progressing" }), 2, NOW - 90_000, window());
        deployment["window"]["last_analysis"]["measurements"][1] = json!({
            "rule": "latency_p90_ratio", "candidate": null, "stable": null, "threshold": 2.0,
            "samples": 0, "result": "not_applicable",
            "detail": "not applicable: the stable answers no live traffic at 100 %"
        });
        let lines = view(&deployment, &[]).lines();
        assert_eq!(
            lines[2],
            "  step 3 of 3: candidate 100% of live traffic; next: promote"
        );
        assert_eq!(
            lines[3],
            "  1m 30s in this step: its 1m are over, waiting for an analysis that passes; 9m 30s left before the progress deadline (rollback)"
        );
        assert_eq!(
            lines[7],
            "    n/a  latency p90 ratio: the stable answers no live traffic at 100 %"
        );
    }

    #[test]
    fn a_rollout_waiting_for_a_person_says_what_to_run() {
        let approval = canary(
            json!({ "state": "awaiting_approval", "promotion_id": 12 }),
            2,
            NOW - 1_000,
            Value::Null,
        );
        let lines = view(&approval, &[]).lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("run `slipway promote approve 12`")),
            "{lines:#?}"
        );
        let paused = canary(
            json!({ "state": "paused", "reason": "progress deadline: stage 3 of 3" }),
            2,
            NOW - 1_000,
            Value::Null,
        );
        let lines = view(&paused, &[]).lines();
        assert!(
            lines.contains(&"  paused: progress deadline: stage 3 of 3".to_owned()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(
                &"  next: `slipway deploy promote fraud` to promote now, or `slipway deploy rollback fraud`"
                    .to_owned()
            ),
            "{lines:#?}"
        );
        let mut preview = canary(json!({ "state": "progressing" }), 0, NOW - 1_000, window());
        preview["rollout"]["strategy"] = json!({ "kind": "blue_green", "preview_ms": 60_000, "mirror_percent": 0, "bake_ms": 0 });
        preview["traffic"]["weight"] = json!(0);
        let lines = view(&preview, &[]).lines();
        assert_eq!(
            lines[2],
            "  step 1 of 1: candidate 0% of live traffic, plus test requests; next: promote"
        );
        assert!(
            lines.iter().any(|l| l
                .contains("-d @input.json http://127.0.0.1:5000/deployments/fraud/invocations")
                && l.contains("x-slipway-variant: candidate")),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_finished_rollout_says_how_it_ended_and_colour_is_optional() {
        let mut done = canary(
            json!({ "state": "rolled_back", "reason": "analysis failed: error_rate: 0.5 > 0.01" }),
            0,
            NOW,
            Value::Null,
        );
        done["rollout"]["ended_ms"] = json!(NOW - 5_000);
        let lines = view(&done, &[]).lines();
        assert_eq!(
            lines[1..],
            [
                "rollout 3: canary of version 2, rolled back 5s ago, after 9m 56s",
                "  why: analysis failed: error_rate: 0.5 > 0.01",
            ]
        );
        let colored = View {
            color: true,
            ..view(&done, &[])
        };
        assert!(
            colored.lines()[1].contains("\u{1b}[31mrolled back"),
            "{:?}",
            colored.lines()
        );
    }

    #[test]
    fn numbers_and_durations_read_as_people_write_them() {
        assert_eq!(number(2.0, 2), "2");
        assert_eq!(number(1.126, 2), "1.13");
        assert_eq!(percent(0.0029411), "0.29 %");
        assert_eq!(age(NOW, NOW - 601_812), "10m 1s");
        assert_eq!(age(NOW, NOW + 5), "0s");
        assert_eq!(plural(1, "error"), "1 error");
    }
}
