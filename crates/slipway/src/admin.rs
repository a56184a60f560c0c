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

use crate::config::{DEFAULT_DATA_DIR, FileConfig, backend_store_uri};

/// Where the admin commands find the metadata store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Metadata store, as for `slipway server` (default: the server's from slipway.toml, or
    /// ./slipway-data/slipway.db).
    #[arg(long, env = "SLIPWAY_BACKEND_STORE_URI", global = true)]
    backend_store_uri: Option<String>,
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
    /// Create a user. The password is read from stdin, never from the command line.
    Create {
        name: String,
        /// viewer, editor, approver or admin.
        #[arg(long)]
        role: String,
        /// Read the password from the first line of stdin. Without it the user can only use
        /// tokens (a service account).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users and their roles.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user with their tokens and permissions.
    Delete { name: String },
    /// Change a user's role.
    SetRole { name: String, role: String },
    /// Change a user's password, read from the first line of stdin.
    SetPassword {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
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
        #[arg(long)]
        user: String,
        /// Lifetime such as 30d, 12h or 90m; without it the token lives until revoked.
        #[arg(long)]
        expires_in: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}

async fn open_app(config: Option<&std::path::Path>, store: &StoreArgs) -> anyhow::Result<App> {
    let file = FileConfig::load(config)?;
    let uri = backend_store_uri(store.backend_store_uri.clone(), &file.server);
    let backend = BackendUri::parse(&uri)?;
    let store = SqlStore::open(&backend, StoreOptions::default())
        .await
        .with_context(|| format!("opening the metadata store {}", backend.redacted()))?;
    // Identity commands never touch artifacts; the store is only there to build the app.
    let artifacts_root = file
        .server
        .artifacts_destination
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR).join("artifacts"));
    let artifacts = ObjectArtifactStore::local(&artifacts_root)
        .with_context(|| format!("opening the artifact folder {}", artifacts_root.display()))?;
    Ok(App::new(
        Arc::new(store),
        Arc::new(artifacts),
        AppSettings::default(),
    ))
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

fn time(ms: i64) -> String {
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
        } => {
            let role = Role::parse(&role)?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let user = app.create_user(&name, role, password).await?;
            println!("created user '{}' with role {}", user.name, user.role);
        }
        UsersCommand::List { json } => {
            let users = app.list_users().await?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|user| {
                        json!({
                            "name": user.name,
                            "role": user.role.as_str(),
                            "created_at": user.created_at,
                            "updated_at": user.updated_at,
                        })
                    })
                    .collect();
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
        UsersCommand::Delete { name } => {
            app.delete_user(&name).await?;
            println!("deleted user '{name}' with their tokens and permissions");
        }
        UsersCommand::SetRole { name, role } => {
            let user = app.set_user_role(&name, Role::parse(&role)?).await?;
            println!("user '{}' now has role {}", user.name, user.role);
        }
        UsersCommand::SetPassword { name, .. } => {
            let password = read_password()?;
            app.set_user_password(&name, password).await?;
            println!("changed the password of user '{name}'");
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
        } => {
            let lifetime = expires_in.as_deref().map(parse_lifetime).transpose()?;
            let issued = app.create_token(&user, lifetime, &description).await?;
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
        TokensCommand::Revoke { id } => {
            let token = app.revoke_token(&id).await?;
            println!("revoked token {} of user '{}'", token.id, token.user_name);
        }
    }
    Ok(())
}
