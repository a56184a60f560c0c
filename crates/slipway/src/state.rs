//! `slipway apply -f` and `slipway diff -f`: the platform's state as code. The YAML documents
//! (`slipway export state` writes them) are read here and sent whole to the server, which
//! plans against what it runs and what the last apply made it match, and applies all of the
//! changes or none.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::remote::{Client, ServerArgs};

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A YAML file of documents (`---` between them), or a folder of them (*.yaml, *.yml,
    /// read in name order); repeat the flag for more.
    #[arg(long = "filename", short = 'f', required = true, value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Print the plan as JSON (`{"plan": {changes, drift, unchanged, revision}}`).
    #[arg(long)]
    json: bool,
}

fn yaml_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry?.path();
        if entry.is_dir() {
            files.extend(yaml_files(&entry)?);
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(entry);
        }
    }
    files.sort();
    Ok(files)
}

/// Every document in the files, in order, each checked to read as YAML.
pub fn read_documents(paths: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut documents = Vec::new();
    for path in paths {
        let files = yaml_files(path)?;
        if files.is_empty() {
            bail!("{} holds no .yaml or .yml file", path.display());
        }
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            for (index, document) in yaml_serde::Deserializer::from_str(&text).enumerate() {
                let value = Value::deserialize(document).with_context(|| {
                    format!(
                        "{}: document {} is not valid YAML",
                        file.display(),
                        index + 1
                    )
                })?;
                if !value.is_null() {
                    documents.push(value);
                }
            }
        }
    }
    Ok(documents)
}

/// The plan as people read it: one line per change, then drift.
fn describe(plan: &Value) -> String {
    let mut lines = Vec::new();
    for change in plan["changes"].as_array().into_iter().flatten() {
        let sign = match change["action"].as_str() {
            Some("create") => "+",
            Some("delete") => "-",
            Some("update") => "~",
            _ => "=",
        };
        let fields: Vec<&str> = change["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut line = format!(
            "{sign} {} ({})",
            change["key"].as_str().unwrap_or(""),
            change["action"].as_str().unwrap_or("")
        );
        if !fields.is_empty() {
            line.push_str(&format!(": {}", fields.join(", ")));
        }
        if let Some(note) = change["note"].as_str() {
            line.push_str(&format!(" ({note})"));
        }
        lines.push(line);
    }
    for drift in plan["drift"].as_array().into_iter().flatten() {
        let fields: Vec<&str> = drift["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        lines.push(format!(
            "! {} changed outside apply: {}",
            drift["key"].as_str().unwrap_or(""),
            fields.join(", ")
        ));
    }
    lines.push(format!(
        "{} to change, {} unchanged, {} drifted",
        plan["changes"]
            .as_array()
            .map_or(0, |c| c.iter().filter(|c| c["action"] != "keep").count()),
        plan["unchanged"],
        plan["drift"].as_array().map_or(0, Vec::len)
    ));
    lines.join("\n")
}

async fn send(args: &StateArgs, path: &str) -> anyhow::Result<Value> {
    let documents = read_documents(&args.files)?;
    let client = Client::new(&args.server)?;
    client
        .call(
            reqwest::Method::POST,
            path,
            Some(json!({ "documents": documents })),
        )
        .await
}

/// `slipway diff`: exits 0 when the server matches the files, 1 when applying would change
/// something or a managed object drifted (as `diff` does, for CI).
pub async fn diff(args: StateArgs) -> anyhow::Result<std::process::ExitCode> {
    let answer = send(&args, "/api/slipway/v1/state/plan").await?;
    let plan = &answer["plan"];
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", describe(plan));
    }
    let changes = plan["changes"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["action"] != "keep"));
    let drift = plan["drift"].as_array().is_some_and(|d| !d.is_empty());
    Ok(std::process::ExitCode::from(u8::from(changes || drift)))
}

/// `slipway apply`: all of the changes or none.
pub async fn apply(args: StateArgs) -> anyhow::Result<()> {
    let answer = send(&args, "/api/slipway/v1/state/apply").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}\napplied", describe(&answer["plan"]));
    }
    Ok(())
}
