//! `slipway slo status DEPLOYMENT`: where a deployment's SLO stands (over the HTTP API).

use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::Value;

use crate::remote::{Client, ServerArgs, urlencode};

#[derive(Debug, Args)]
pub struct SloArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: SloCommand,
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Each objective's share of good requests over the SLO's window, the error budget left,
    /// and the burn rates over the alerting windows (1h, 6h, 3d). Exits 1 while a budget burns
    /// at a paging rate, 2 once one is spent.
    Status {
        /// The deployment's name.
        deployment: String,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "—".to_owned(), |v| format!("{:.3}%", v * 100.0))
}

pub async fn slo(args: SloArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::new(&args.server)?;
    let SloCommand::Status { deployment, json } = args.command;
    let status = client
        .call(
            reqwest::Method::GET,
            &format!("/api/slipway/v1/deployments/{}/slo", urlencode(&deployment)),
            None,
        )
        .await?;
    let objectives = status["objectives"].as_array().cloned().unwrap_or_default();
    let spent = objectives
        .iter()
        .any(|o| o["budget_remaining"].as_f64().is_some_and(|b| b < 0.0));
    let paging = objectives.iter().any(|o| {
        o["burn_rates"].as_array().is_some_and(|rates| {
            rates
                .iter()
                .any(|r| r["burning"] == true && r["severity"] == "page")
        })
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let mut table = Table::new();
        table.set_header([
            "OBJECTIVE",
            "TARGET",
            "MEASURED",
            "REQUESTS",
            "BAD",
            "BUDGET LEFT",
            "BURN 1h/5m",
            "BURN 6h/30m",
            "BURN 3d/6h",
        ]);
        for objective in &objectives {
            let name = match objective["threshold_ms"].as_f64() {
                Some(ms) => format!("latency <= {ms} ms"),
                None => objective["kind"].as_str().unwrap_or("").to_owned(),
            };
            let mut row = vec![
                name,
                percent(&objective["objective"]),
                percent(&objective["sli"]),
                objective["requests"].to_string(),
                objective["bad"].to_string(),
                percent(&objective["budget_remaining"]),
            ];
            for rate in objective["burn_rates"].as_array().into_iter().flatten() {
                let burn = |key: &str| {
                    rate[key]
                        .as_f64()
                        .map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"))
                };
                let mark = if rate["burning"] == true {
                    format!(
                        " > {} ({})",
                        rate["threshold"],
                        rate["severity"].as_str().unwrap_or("")
                    )
                } else {
                    String::new()
                };
                row.push(format!(
                    "{}/{}{mark}",
                    burn("burn_rate"),
                    burn("short_burn_rate")
                ));
            }
            table.add_row(row);
        }
        println!(
            "SLO of {deployment} over {} days:\n{table}",
            status["window_days"]
        );
    }
    Ok(std::process::ExitCode::from(if spent {
        2
    } else if paging {
        1
    } else {
        0
    }))
}
