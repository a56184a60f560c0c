//! `slipway users ...` and `slipway tokens ...`: identity administration straight against the
//! metadata store the server uses (the same `--backend-store-uri`), so the first admin can be
//! created before any server runs and a locked-out team can recover.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::json;
use slipway_app::identity::{Secret, parse_lifetime};
use slipway_app::{App, AppSettings};
use slipway_artifacts::ObjectArtifactStore;
use slipway_core::auth::Role;
use slipway_store::{BackendUri, SqlStore, StoreOptions};

use crate::config::{FileConfig, backend_store_uri};

/// Where the admin commands find the metadata store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Metadata store, as for `slipway server` (default: the server's from slipway.toml, or
    /// ./slipway-data/slipway.db).
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI", global = true)]
    backend_store_uri: Option<String>,
    /// Make a new, empty metadata store if there is none (the SQLite file, or the schema in an
    /// empty PostgreSQL database), e.g. for the first admin before any server has run. Without
    /// it a store that does not exist is an error, so a mistyped path cannot go unnoticed.
    #[arg(long, global = true)]
    create: bool,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user. The password is read from stdin, never from the command line. On a
    /// brand-new store (the first admin, before any server ran) add --create.
    Create {
        /// The user's name, as they log in.
        name: String,
        /// viewer, editor, approver, admin, replica (a serving replica) or worker (a retraining
        /// worker).
        #[arg(long)]
        role: String,
        /// Read the password from the first line of stdin. Without it the user can only use
        /// tokens (a service account).
        #[arg(long)]
        password_stdin: bool,
        /// Print the user as JSON (`{"user": {name, role, created_at, updated_at}}`).
        #[arg(long)]
        json: bool,
    },
    /// List users and their roles.
    List {
        /// Print a JSON array of `{name, role, created_at, updated_at}`.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user with their tokens and permissions.
    Delete {
        /// The user to delete.
        name: String,
        /// Print `{"deleted": NAME}` instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role.
    SetRole {
        /// The user.
        name: String,
        /// The new role: viewer, editor, approver, admin, replica or worker.
        role: String,
        /// Print the user as JSON (`{"user": {...}}`).
        #[arg(long)]
        json: bool,
    },
    /// Change a user's password, read from the first line of stdin.
    SetPassword {
        /// The user.
        name: String,
        /// Read the new password from the first line of stdin (required: never an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Print `{"user": NAME, "password_changed": true}` instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create an API token; it is printed once and cannot be shown again.
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// Lifetime such as 30d, 12h or 90m; without it the token lives until revoked.
        #[arg(long)]
        expires_in: Option<String>,
        /// What the token is for, shown by `tokens list`.
        #[arg(long, default_value = "")]
        description: String,
        /// Print `{"token": SECRET, "id", "user", "description", "created_at",
        /// "expires_at"}` instead of the bare secret.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
        /// Print a JSON array of `{id, user, description, created_at, expires_at,
        /// revoked_at}`.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The token's id, as `tokens list` shows it.
        id: String,
        /// Print `{"revoked": ID, "user": NAME}` instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain. Exits 0 when it is intact; otherwise names the first bad entry
    /// and exits 1.
    Verify {
        /// An earlier head kept outside the database, as SEQ:HASH (what `verify` prints);
        /// catches a rewrite of the whole chain from that entry on.
        #[arg(long)]
        expect_head: Option<String>,
        /// Print `{"intact", "checked", "head": {seq, hash}}` (and `first_bad_entry` or
        /// `ends_before` when it is not intact).
        #[arg(long)]
        json: bool,
    },
    /// Show entries, newest first (a note on stderr says when older ones were left out).
    Log {
        /// Exactly this resource, e.g. registered_model:fraud or run:<id>.
        #[arg(long)]
        resource: Option<String>,
        /// Only this actor's entries, e.g. alice or cli:root.
        #[arg(long)]
        actor: Option<String>,
        /// Entries since a time (RFC 3339, e.g. 2026-11-27T00:00:00Z) or for a span back
        /// from now (e.g. 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries, the newest.
        #[arg(long, default_value_t = 100,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
        limit: usize,
        /// Print a JSON array of entries (`{seq, time, time_ms, actor, action, resource,
        /// request_id, outcome, summary, prev_hash, hash}`), newest first.
        #[arg(long)]
        json: bool,
    },
    /// Write every entry as one JSON object per line (JSONL), to a file or stdout.
    Export {
        /// File to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Who the admin commands act as in the audit log: the login name, else the OS account of the
/// process, else its numeric user id. Never a placeholder: the log must say who it was even
/// where `$USER` is unset (cron, containers, `env -i`).
fn cli_actor() -> String {
    let from_env = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    let user = from_env
        .or_else(|| whoami::username().ok().filter(|name| !name.is_empty()))
        .or_else(process_uid);
    match user {
        Some(user) => format!("cli:{user}"),
        None => "cli:uid-unknown".to_owned(),
    }
}

/// The process's user id as `uid-N`, read from the owner of `/proc/self` (Linux), which needs no
/// unsafe call and no user database.
fn process_uid() -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .ok()
            .map(|meta| format!("uid-{}", meta.uid()))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

pub(crate) async fn open_app(
    config: Option<&std::path::Path>,
    store: &StoreArgs,
) -> anyhow::Result<App> {
    let file = FileConfig::load(config)?;
    let uri = backend_store_uri(store.backend_store_uri.clone(), &file.server);
    let backend = BackendUri::parse(&uri)?;
    let options = StoreOptions {
        create_if_missing: store.create,
        ..StoreOptions::default()
    };
    let store = match SqlStore::open(&backend, options).await {
        Ok(store) => store,
        // The store's message names what is missing; say here what to do about it.
        Err(error @ slipway_core::Error::NotFound(_)) => bail!(
            "{error}; point --backend-store-uri (or SLIPWAY_BACKEND_STORE_URI, or \
             backend_store_uri in slipway.toml) at the store the server uses, or make a new \
             store with --create (e.g. `slipway users create NAME --role admin --create`)"
        ),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("opening the metadata store {}", backend.redacted()));
        }
    };
    // Identity commands never touch artifacts; the store is only there to build the app, so
    // they neither make the server's folder nor need its bucket's credentials.
    let artifacts = ObjectArtifactStore::in_memory();
    Ok(
        App::new(Arc::new(store), Arc::new(artifacts), AppSettings::default())
            .for_caller(cli_actor(), None),
    )
}

fn read_password() -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!(
            "no password on stdin: pipe it in, e.g. `printf '%s' \"$PASSWORD\" | slipway users create ...`"
        );
    }
    Ok(Secret::new(password))
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn user_json(user: &slipway_core::auth::User) -> serde_json::Value {
    json!({
        "name": user.name,
        "role": user.role.as_str(),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

pub(crate) fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

pub async fn users(config: Option<&std::path::Path>, args: UsersArgs) -> anyhow::Result<()> {
    let app = open_app(config, &args.store).await?;
    match args.command {
        UsersCommand::Create {
            name,
            role,
            password_stdin,
            json,
        } => {
            let role = Role::parse(&role)?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let user = app.create_user(&name, role, password).await?;
            if json {
                print_json(&json!({ "user": user_json(&user) }))?;
            } else {
                println!("created user '{}' with role {}", user.name, user.role);
            }
        }
        UsersCommand::List { json } => {
            let users = app.list_users().await?;
            if json {
                let rows: Vec<_> = users.iter().map(user_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table = Table::new();
                table.set_header(["name", "role", "created"]);
                for user in &users {
                    table.add_row([
                        user.name.clone(),
                        user.role.to_string(),
                        time(user.created_at),
                    ]);
                }
                println!("{table}");
            }
        }
        UsersCommand::Delete { name, json } => {
            app.delete_user(&name).await?;
            if json {
                print_json(&json!({ "deleted": name }))?;
            } else {
                println!("deleted user '{name}' with their tokens and permissions");
            }
        }
        UsersCommand::SetRole { name, role, json } => {
            let user = app.set_user_role(&name, Role::parse(&role)?).await?;
            if json {
                print_json(&json!({ "user": user_json(&user) }))?;
            } else {
                println!("user '{}' now has role {}", user.name, user.role);
            }
        }
        UsersCommand::SetPassword { name, json, .. } => {
            let password = read_password()?;
            app.set_user_password(&name, password).await?;
            if json {
                print_json(&json!({ "user": name, "password_changed": true }))?;
            } else {
                println!("changed the password of user '{name}'");
            }
        }
    }
    Ok(())
}

pub async fn tokens(config: Option<&std::path::Path>, args: TokensArgs) -> anyhow::Result<()> {
    let app = open_app(config, &args.store).await?;
    match args.command {
        TokensCommand::Create {
            user,
            expires_in,
            description,
            json,
        } => {
            let lifetime = expires_in.as_deref().map(parse_lifetime).transpose()?;
            let issued = app.create_token(&user, lifetime, &description).await?;
            if json {
                return print_json(&json!({
                    "token": issued.token.expose(),
                    "id": issued.info.id,
                    "user": issued.info.user_name,
                    "description": issued.info.description,
                    "created_at": issued.info.created_at,
                    "expires_at": issued.info.expires_at,
                }));
            }
            eprintln!(
                "created token {} for user '{}'{}; it is shown once, store it now:",
                issued.info.id,
                issued.info.user_name,
                issued
                    .info
                    .expires_at
                    .map(|at| format!(", expiring at {}", time(at)))
                    .unwrap_or_default()
            );
            // The secret alone on stdout, so `TOKEN=$(slipway tokens create ...)` works.
            println!("{}", issued.token.expose());
        }
        TokensCommand::List { user, json } => {
            let tokens = app.list_tokens(user.as_deref()).await?;
            if json {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|token| {
                        json!({
                            "id": token.id,
                            "user": token.user_name,
                            "description": token.description,
                            "created_at": token.created_at,
                            "expires_at": token.expires_at,
                            "revoked_at": token.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table = Table::new();
                table.set_header(["id", "user", "description", "state", "expires"]);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                for token in &tokens {
                    let state = if token.revoked_at.is_some() {
                        "revoked"
                    } else if token.is_usable(now) {
                        "active"
                    } else {
                        "expired"
                    };
                    table.add_row([
                        token.id.clone(),
                        token.user_name.clone(),
                        token.description.clone(),
                        state.to_owned(),
                        token.expires_at.map(time).unwrap_or_else(|| "never".into()),
                    ]);
                }
                println!("{table}");
            }
        }
        TokensCommand::Revoke { id, json } => {
            let token = app.revoke_token(&id).await?;
            if json {
                print_json(&json!({ "revoked": token.id, "user": token.user_name }))?;
            } else {
                println!("revoked token {} of user '{}'", token.id, token.user_name);
            }
        }
    }
    Ok(())
}

pub(crate) fn parse_since(raw: &str) -> anyhow::Result<i64> {
    parse_time("--since", raw)
}

/// A time given as a span back from now (24h, 7d) or in RFC 3339; `flag` names it in errors.
pub(crate) fn parse_time(flag: &str, raw: &str) -> anyhow::Result<i64> {
    if let Ok(span) = parse_lifetime(raw) {
        let now = std::time::SystemTime::now();
        let at = now.checked_sub(span).unwrap_or(std::time::UNIX_EPOCH);
        return Ok(at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64));
    }
    let at = humantime::parse_rfc3339_weak(raw).with_context(|| {
        format!("{flag} '{raw}': use RFC 3339 (2026-11-27T00:00:00Z) or a span such as 24h or 7d")
    })?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

fn entry_json(record: &slipway_core::audit::AuditRecord) -> serde_json::Value {
    json!({
        "seq": record.seq,
        "time": time(record.time_ms),
        "time_ms": record.time_ms,
        "actor": record.actor,
        "action": record.action,
        "resource": record.resource,
        "request_id": record.request_id,
        "outcome": record.outcome.as_str(),
        "summary": serde_json::from_str::<serde_json::Value>(&record.summary)
            .unwrap_or_else(|_| serde_json::Value::String(record.summary.clone())),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    })
}

fn progress_bar(total: i64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} entries ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(message);
    bar
}

pub async fn audit(config: Option<&std::path::Path>, args: AuditArgs) -> anyhow::Result<()> {
    let app = open_app(config, &args.store).await?;
    match args.command {
        AuditCommand::Verify { expect_head, json } => {
            let (head_seq, _) = app.store().audit_head().await?;
            let bar = progress_bar(head_seq, "verifying");
            let report = app
                .verify_audit(|checked| bar.set_position(checked))
                .await?;
            bar.finish_and_clear();
            let mut broken = report.broken.clone();
            let mut ends_early = None;
            if broken.is_none()
                && let Some(anchor) = expect_head
            {
                let (seq, hash) = anchor
                    .split_once(':')
                    .and_then(|(seq, hash)| Some((seq.parse::<i64>().ok()?, hash.to_owned())))
                    .context(
                        "--expect-head must be SEQ:HASH, as `slipway audit verify` prints it",
                    )?;
                if seq > report.head_seq {
                    // Nothing at `seq` to compare: entries were cut off the end (or the
                    // anchor belongs to another store). Naming entry `seq` as broken would
                    // send the reader looking for an entry that is not there.
                    ends_early = Some(seq);
                } else {
                    let found = app
                        .store()
                        .read_audit(&Default::default(), seq - 1, 1)
                        .await?
                        .into_iter()
                        .next()
                        .filter(|entry| entry.seq == seq);
                    if found.as_ref().is_none_or(|entry| entry.hash != hash) {
                        broken = Some(slipway_core::audit::ChainBreak {
                            seq,
                            reason: "it differs from the head recorded outside the database (the chain was rewritten from there on)".to_owned(),
                        });
                    }
                }
            }
            if json {
                let mut body = json!({
                    "intact": broken.is_none() && ends_early.is_none(),
                    "checked": report.checked,
                    "head": { "seq": report.head_seq, "hash": report.head_hash },
                });
                if let Some(broken) = &broken {
                    body["first_bad_entry"] = json!({ "seq": broken.seq, "reason": broken.reason });
                }
                if let Some(expected) = ends_early {
                    body["ends_before"] = json!(expected);
                }
                println!("{}", serde_json::to_string_pretty(&body)?);
            }
            if let Some(broken) = broken {
                bail!(
                    "audit chain broken at entry {}: {} ({} entries before it verified)",
                    broken.seq,
                    broken.reason,
                    report.checked
                );
            }
            if let Some(expected) = ends_early {
                let end = match report.head_seq {
                    0 => "audit log has no entries".to_owned(),
                    last => format!("audit chain ends at entry {last}"),
                };
                bail!(
                    "{end}, before entry {expected} of the head recorded outside the database: entries {} to {expected} were removed (or that head belongs to another store)",
                    report.head_seq + 1,
                );
            }
            if !json {
                if report.checked == 0 {
                    println!("audit log has no entries: nothing to verify");
                } else {
                    println!(
                        "audit chain intact: {} entries; head {}:{}",
                        report.checked, report.head_seq, report.head_hash
                    );
                }
            }
            Ok(())
        }
        AuditCommand::Log {
            resource,
            actor,
            since,
            limit,
            json,
        } => {
            let filter = slipway_core::ports::AuditFilter {
                resource,
                actor,
                since_ms: since.as_deref().map(parse_since).transpose()?,
            };
            // Newest first, one entry past the limit to know whether more are left.
            let mut entries = Vec::new();
            let mut before: Option<i64> = None;
            while entries.len() <= limit {
                let want = (limit + 1 - entries.len()).min(slipway_app::audit::AUDIT_PAGE_MAX);
                let page = app.store().read_audit_newest(&filter, before, want).await?;
                let done = page.len() < want;
                before = page.last().map(|entry| entry.seq);
                entries.extend(page);
                if done {
                    break;
                }
            }
            let more = entries.len() > limit;
            entries.truncate(limit);
            if more {
                eprintln!(
                    "showing the newest {limit} entries; older ones exist: raise --limit, or narrow with --since, --resource or --actor"
                );
            }
            if json {
                let rows: Vec<_> = entries.iter().map(entry_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table = Table::new();
                table.set_header([
                    "seq", "time", "actor", "action", "resource", "outcome", "summary",
                ]);
                for entry in &entries {
                    let mut summary = entry.summary.clone();
                    if summary.chars().count() > 80 {
                        summary = summary.chars().take(77).collect::<String>() + "...";
                    }
                    table.add_row([
                        entry.seq.to_string(),
                        time(entry.time_ms),
                        entry.actor.clone(),
                        entry.action.clone(),
                        entry.resource.clone(),
                        entry.outcome.as_str().to_owned(),
                        summary,
                    ]);
                }
                println!("{table}");
            }
            Ok(())
        }
        AuditCommand::Export { output } => {
            use std::io::Write;
            let (head_seq, _) = app.store().audit_head().await?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let bar = progress_bar(head_seq, "exporting");
            let mut written = 0u64;
            let mut failure: Option<std::io::Error> = None;
            app.walk_audit(head_seq, |entry| {
                if let Err(error) = serde_json::to_writer(&mut out, &entry_json(entry))
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                {
                    failure = Some(error);
                    return Err(slipway_core::Error::internal_msg("stop"));
                }
                written += 1;
                if written.is_multiple_of(10_000) {
                    bar.set_position(written);
                }
                Ok(())
            })
            .await
            .or_else(|error| {
                if failure.is_some() {
                    Ok(())
                } else {
                    Err(error)
                }
            })?;
            if let Some(error) = failure {
                return Err(error).context("writing the export");
            }
            out.flush().context("writing the export")?;
            bar.finish_and_clear();
            if let Some(path) = output {
                eprintln!("exported {written} entries to {}", path.display());
            }
            Ok(())
        }
    }
}
