//! `slipway alerts`: apply a rules file (YAML or JSON), list alerts, and manage silences, over
//! the HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use slipway_core::alerting::AlertConfig;

use crate::remote::{Client, ServerArgs, urlencode};

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// The alert rules, their receivers and route: one file applied whole (admins).
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Alerts pending and firing now, then the latest resolved ones. Exit code 0 when none
    /// fires, 1 when one does (after the state and deployment filters), 2 on an error.
    List {
        /// Only alerts in this state: pending, firing or resolved.
        #[arg(long)]
        state: Option<String>,
        /// Only alerts of this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// Resolved alerts to show at most.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Hold back notifications of matching alerts for a while (approvers). Alerts are still
    /// evaluated, recorded and listed.
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Make the server's alerting configuration exactly FILE's (YAML or JSON): what it adds,
    /// changes and removes is printed first.
    Apply {
        /// The rules file: receivers, route, rules.
        file: PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the applied rules (YAML; receivers by name and kind).
    Show {
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SilenceCommand {
    /// Silence alerts whose labels match every --match.
    Create {
        /// LABEL=VALUE or LABEL!=VALUE (repeat; at least one LABEL=VALUE), e.g.
        /// --match alertname=FeatureDrift --match deployment=fraud.
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long from now.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2h")]
        duration: std::time::Duration,
        /// Why, and who to ask.
        #[arg(long)]
        comment: String,
    },
    /// Silences in force (or yet to start).
    List {
        /// Expired ones too.
        #[arg(long)]
        all: bool,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence's id.
        id: i64,
    },
}

/// Reads a rules file: YAML (which JSON also is), checked whole before it is sent.
pub fn read_rules(path: &std::path::Path) -> anyhow::Result<AlertConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the rules file {}", path.display()))?;
    let config: AlertConfig =
        yaml_serde::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

fn names(list: &Value) -> String {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn print_diff(diff: &Value) {
    let mut any = false;
    for (key, what) in [
        ("rules_added", "rules added"),
        ("rules_changed", "rules changed"),
        ("rules_removed", "rules removed"),
        ("receivers_added", "receivers added"),
        ("receivers_changed", "receivers changed"),
        ("receivers_removed", "receivers removed"),
    ] {
        if diff[key].as_array().is_some_and(|a| !a.is_empty()) {
            println!("  {what}: {}", names(&diff[key]));
            any = true;
        }
    }
    if diff["route_changed"].as_bool() == Some(true) {
        println!("  route changed");
        any = true;
    }
    if !any {
        println!("  nothing changes");
    }
}

fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms.and_then(|ms| u64::try_from(ms).ok()) else {
        return "-".to_owned();
    };
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn alert_line(alert: &Value) -> String {
    let labels = &alert["labels"];
    let state = alert["state"].as_str().unwrap_or("?");
    let since = match state {
        "resolved" => format!("resolved {}", time(alert["resolved_ms"].as_i64())),
        "firing" => format!("since {}", time(alert["fired_ms"].as_i64())),
        _ => format!("holding since {}", time(alert["active_since_ms"].as_i64())),
    };
    let value = alert["value"]
        .as_f64()
        .map(slipway_core::alerting::state::show_value)
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{:<9} {:<8} {:<28} {:<16} value {:<8} {since}\n          {}",
        state.to_uppercase(),
        labels["severity"].as_str().unwrap_or("-"),
        labels["alertname"].as_str().unwrap_or("?"),
        labels["deployment"].as_str().unwrap_or("?"),
        value,
        alert["annotations"]["summary"].as_str().unwrap_or_default(),
    );
    if let Some(url) = alert["annotations"]["runbook_url"].as_str() {
        line.push_str(&format!("\n          runbook: {url}"));
    }
    line
}

pub async fn alerts(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    match args.command {
        AlertsCommand::Rules {
            command: RulesCommand::Apply { file, dry_run },
        } => {
            let config = read_rules(&file)?;
            let rules = config.rules.len();
            let receivers = config.receivers.len();
            let answer = client
                .call(
                    reqwest::Method::PUT,
                    "/api/slipway/v1/alerts/config",
                    Some(json!({ "config": config, "dry_run": dry_run })),
                )
                .await?;
            if dry_run {
                println!("applying {} would change:", file.display());
            } else {
                println!(
                    "applied {} ({rules} rules, {receivers} receivers) as revision {}:",
                    file.display(),
                    answer["revision"]
                );
            }
            print_diff(&answer["diff"]);
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Rules {
            command: RulesCommand::Show { json },
        } => {
            let answer = client
                .call(reqwest::Method::GET, "/api/slipway/v1/alerts/rules", None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!(
                    "# revision {}, applied by {} at {}",
                    answer["revision"],
                    answer["updated_by"].as_str().unwrap_or("-"),
                    time(answer["updated_ms"].as_i64())
                );
                print!(
                    "{}",
                    yaml_serde::to_string(&json!({
                        "receivers": answer["receivers"],
                        "route": answer["route"],
                        "rules": answer["rules"],
                    }))?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::List {
            state,
            deployment,
            limit,
            json,
        } => {
            let mut path = format!("/api/slipway/v1/alerts?limit={}", limit.clamp(1, 1_000));
            if let Some(state) = &state {
                path.push_str(&format!("&state={}", urlencode(state)));
            }
            if let Some(deployment) = &deployment {
                path.push_str(&format!("&deployment={}", urlencode(deployment)));
            }
            let answer = client.call(reqwest::Method::GET, &path, None).await?;
            let active = answer["alerts"].as_array().cloned().unwrap_or_default();
            let resolved = answer["resolved"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                if active.is_empty() {
                    println!("no alert is pending or firing");
                }
                for alert in &active {
                    println!("{}", alert_line(alert));
                }
                if !resolved.is_empty() {
                    println!("\nresolved, newest first:");
                    for alert in &resolved {
                        println!("{}", alert_line(alert));
                    }
                }
            }
            let firing = active.iter().any(|a| a["state"] == "firing");
            Ok(if firing {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        AlertsCommand::Silence {
            command:
                SilenceCommand::Create {
                    matchers,
                    duration,
                    comment,
                },
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("reading the clock")?
                .as_millis() as i64;
            let ends = now.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            let answer = client
                .call(
                    reqwest::Method::POST,
                    "/api/slipway/v1/alerts/silences",
                    Some(json!({
                        "matchers": matchers,
                        "starts_ms": now,
                        "ends_ms": ends,
                        "comment": comment,
                    })),
                )
                .await?;
            let silence = &answer["silence"];
            println!(
                "silence {} holds back alerts matching {} until {}",
                silence["id"],
                names(&silence["matchers"]),
                time(silence["ends_ms"].as_i64())
            );
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Silence {
            command: SilenceCommand::List { all, json },
        } => {
            let answer = client
                .call(
                    reqwest::Method::GET,
                    &format!("/api/slipway/v1/alerts/silences?all={all}"),
                    None,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let silences = answer["silences"].as_array().cloned().unwrap_or_default();
            if silences.is_empty() {
                println!("no silence");
            }
            for s in silences {
                println!(
                    "{:>4}  {}  {} .. {}  by {}: {}",
                    s["id"],
                    names(&s["matchers"]),
                    time(s["starts_ms"].as_i64()),
                    time(s["ends_ms"].as_i64()),
                    s["created_by"].as_str().unwrap_or("?"),
                    s["comment"].as_str().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Silence {
            command: SilenceCommand::Expire { id },
        } => {
            if id <= 0 {
                bail!("a silence id is a positive number (see `slipway alerts silence list`)");
            }
            let answer = client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/slipway/v1/alerts/silences/{id}"),
                    None,
                )
                .await?;
            println!(
                "silence {} ended at {}",
                id,
                time(answer["silence"]["ends_ms"].as_i64())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_file_reads_and_validates() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/alerts.yml");
        let config = read_rules(&path).unwrap();
        assert_eq!(config.rules.len(), 7);
        assert_eq!(config.receivers[0].name, "oncall");
        assert!(config.rules.iter().all(|r| {
            r.runbook_url
                .as_deref()
                .is_some_and(|u| u.contains("docs/runbooks.md#"))
        }));
    }

    #[test]
    fn a_bad_rules_file_names_the_file_and_the_mistake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yml");
        std::fs::write(&path, "rules:\n  - alert: A\n    expr: error_rate\n").unwrap();
        let error = read_rules(&path).unwrap_err().to_string();
        assert!(
            error.contains("rules.yml") && error.contains("compare it"),
            "{error}"
        );
        std::fs::write(&path, "rulez: []\n").unwrap();
        let error = read_rules(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `rulez`"), "{error}");
    }
}
