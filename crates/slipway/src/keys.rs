//! `slipway keys`: the master key that encrypts the prediction log and labels at rest
//! (`slipway server --encryption-key`). Keys are given as references (`file:PATH`,
//! `env:NAME`), never on the command line, where `ps` would show them.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use slipway_app::sealing::MasterKey;

use crate::admin::{StoreArgs, open_app, time};

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random master key (32 bytes, base64). Keep it where the server reads it
    /// (a file only its user may read, or a Kubernetes Secret), and keep a copy apart: without
    /// it the encrypted prediction log cannot be read by anyone.
    Generate,
    /// Re-wrap every data key from the old master key to the new one, in one transaction
    /// (audited). The encrypted values are not rewritten. Restart the servers with the new key
    /// afterwards; until then they keep working on the keys they opened.
    Rotate {
        /// The current master key: file:PATH or env:NAME.
        #[arg(long, value_name = "REF")]
        from: String,
        /// The new master key: file:PATH or env:NAME.
        #[arg(long, value_name = "REF")]
        to: String,
        /// Print `{"rewrapped", "from", "to"}`.
        #[arg(long)]
        json: bool,
    },
    /// List the data keys: id, the master key that wraps them, when made. No key material.
    List {
        /// Print `{"data_keys": [{id, master_key_id, created}]}`.
        #[arg(long)]
        json: bool,
    },
}

/// The value a reference names: `file:PATH` (the file's content, trimmed) or `env:NAME`;
/// `None` for text that is no reference. `what` names the value in errors.
pub fn read_reference(reference: &str, what: &str) -> anyhow::Result<Option<String>> {
    Ok(match reference.split_once(':') {
        Some(("file", path)) if !path.is_empty() => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the {what} from {path}"))?
                .trim()
                .to_owned(),
        ),
        Some(("env", name)) if !name.is_empty() => Some(
            std::env::var(name)
                .with_context(|| {
                    format!("reading the {what} from the environment variable {name}")
                })?
                .trim()
                .to_owned(),
        ),
        _ => None,
    })
}

/// A master key from its reference. A key written out in full is refused, so it never lands
/// in shell history or `ps`.
pub fn master_key(reference: &str) -> anyhow::Result<MasterKey> {
    let Some(text) = read_reference(reference, "master key")? else {
        bail!(
            "the master key is given by reference, file:PATH or env:NAME, never by value (make one with `slipway keys generate > PATH`)"
        );
    };
    MasterKey::parse(&text).with_context(|| format!("the master key in {reference}"))
}

pub async fn keys(config: Option<&std::path::Path>, args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Generate => {
            println!("{}", MasterKey::generate()?);
            Ok(())
        }
        KeysCommand::Rotate { from, to, json } => {
            let (from, to) = (master_key(&from)?, master_key(&to)?);
            if from.id() == to.id() {
                bail!("--from and --to name the same key ({})", from.id());
            }
            let app = open_app(config, &args.store).await?;
            let rewrapped = app.rotate_master_key(&from, &to).await?;
            if json {
                println!(
                    "{}",
                    json!({ "rewrapped": rewrapped, "from": from.id(), "to": to.id() })
                );
            } else {
                println!(
                    "re-wrapped {rewrapped} data keys from master key {} to {}; restart the servers with the new key",
                    from.id(),
                    to.id()
                );
            }
            Ok(())
        }
        KeysCommand::List { json } => {
            let app = open_app(config, &args.store).await?;
            let keys = app.store().list_data_keys().await?;
            if json {
                let keys: Vec<_> = keys
                    .iter()
                    .map(|k| json!({ "id": k.id, "master_key_id": k.master_key_id, "created": time(k.created_ms) }))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "data_keys": keys }))?
                );
            } else if keys.is_empty() {
                println!("no data keys: nothing is encrypted at rest in this store");
            } else {
                for key in keys {
                    println!(
                        "{}  wrapped by master key {}  made {}",
                        key.id,
                        key.master_key_id,
                        time(key.created_ms)
                    );
                }
            }
            Ok(())
        }
    }
}
