//! `slipway report delivery`: deploy frequency, lead time for changes, change failure rate,
//! time to restore and cost per 1,000 inferences, per model and overall (over the HTTP API).

use clap::{Args, Subcommand};
use comfy_table::Table;
use slipway_core::delivery::{DeliveryMetrics, DeliveryReport, Durations, human_span as span};

use crate::remote::{Client, ServerArgs};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Delivery metrics from recorded events: deploys, lead time from the source run's start
    /// to production, change failure rate (rollouts rolled back, versions rolled back or
    /// followed by an alert), time to restore, and cost per 1,000 inferences (CPU time of the
    /// model runs x the server's --cpu-hour-price).
    Delivery {
        /// Start of the period: a span back from now (30d, 12h) or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// End of the period (default: now), as --since.
        #[arg(long)]
        until: Option<String>,
        /// Print the server's answer as JSON, with every change and incident.
        #[arg(long)]
        json: bool,
    },
}

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let ReportCommand::Delivery { since, until, json } = args.command;
    let since_ms = crate::admin::parse_since(&since)?;
    let mut path = format!("/api/slipway/v1/reports/delivery?since={since_ms}");
    if let Some(until) = until {
        path.push_str(&format!(
            "&until={}",
            crate::admin::parse_time("--until", &until)?
        ));
    }
    let answer = client.call(reqwest::Method::GET, &path, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let report: DeliveryReport = serde_json::from_value(answer)
        .map_err(|e| anyhow::anyhow!("the server's delivery report is not understood: {e}"))?;
    print!("{}", render(&report));
    Ok(())
}

fn durations(d: &Option<Durations>) -> String {
    d.as_ref().map_or_else(
        || "—".to_owned(),
        |d| format!("{} (n={})", span(d.median_ms), d.count),
    )
}

fn row(name: &str, m: &DeliveryMetrics) -> Vec<String> {
    vec![
        name.to_owned(),
        format!("{} ({:.2}/day)", m.deploys, m.deploys_per_day),
        durations(&m.lead_time),
        m.change_failure_rate.map_or_else(
            || "—".to_owned(),
            |r| format!("{:.0}% ({}/{})", r * 100.0, m.failed_changes, m.changes),
        ),
        durations(&m.time_to_restore)
            + &if m.open_incidents > 0 {
                format!(", {} open", m.open_incidents)
            } else {
                String::new()
            },
        m.requests.to_string(),
        m.cpu_ms_per_1000
            .map_or_else(|| "—".to_owned(), |ms| format!("{ms:.1} ms")),
        m.cost_per_1000
            .map_or_else(|| "—".to_owned(), |c| format!("{c:.6}")),
    ]
}

pub(crate) fn render(report: &DeliveryReport) -> String {
    let mut table = Table::new();
    table.set_header([
        "MODEL",
        "DEPLOYS",
        "LEAD TIME (median)",
        "CHANGE FAILURE RATE",
        "TIME TO RESTORE (median)",
        "REQUESTS",
        "CPU / 1,000",
        "COST / 1,000",
    ]);
    for (model, metrics) in &report.models {
        table.add_row(row(model, metrics));
    }
    table.add_row(row("(all)", &report.overall));
    let mut out = format!(
        "Delivery from {} to {}{}:\n{table}\n",
        crate::admin::time(report.since_ms),
        crate::admin::time(report.until_ms),
        report.cpu_hour_price.map_or_else(
            || " (no --cpu-hour-price on the server: cost not priced)".to_owned(),
            |p| format!(", CPU hour at {p}")
        ),
    );
    let failed: Vec<_> = report
        .changes
        .iter()
        .filter(|c| c.failed.is_some())
        .collect();
    if !failed.is_empty() {
        out.push_str("Failed changes:\n");
        for change in failed {
            out.push_str(&format!(
                "  {} {} version {}: {}\n",
                crate::admin::time(change.time_ms),
                change.deployment,
                change.version,
                change.failed.as_deref().unwrap_or("")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_their_unit() {
        assert_eq!(span(850), "850ms");
        assert_eq!(span(45_000), "45.0s");
        assert_eq!(span(30 * 60_000), "30m");
        assert_eq!(span(5 * 3_600_000), "5.0h");
        assert_eq!(span(3 * 86_400_000), "3.0d");
    }
}
