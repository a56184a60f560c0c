//! The store commands (`users`, `tokens`, `audit`) and the CLI's own behaviour as a user meets
//! it, by running the binary: a missing store is an error that names it, output into a closed
//! pipe ends quietly, the audit log reads newest first, completions print.

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_slipway");

/// Runs `slipway ARGS` in `dir` with no MLFLOW_/SLIPWAY_ settings from the environment.
fn slipway(dir: &std::path::Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("running slipway")
}

fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("SLIPWAY_") || name.starts_with("MLFLOW_") {
            command.env_remove(name);
        }
    }
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let output = slipway(dir, args);
    assert!(
        output.status.success(),
        "slipway {args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn fails(dir: &std::path::Path, args: &[&str]) -> String {
    let output = slipway(dir, args);
    assert!(
        !output.status.success(),
        "slipway {args:?} should have failed: {}",
        text(&output.stdout)
    );
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn store_commands_refuse_a_store_that_does_not_exist_and_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo/slipway.db");
    let uri = format!("sqlite:///{}", db.display());
    for args in [
        vec!["users", "list"],
        vec!["tokens", "list"],
        vec!["audit", "verify"],
        vec!["audit", "log"],
        vec!["users", "create", "root", "--role", "admin"],
    ] {
        let mut args = args.clone();
        args.extend(["--backend-store-uri", &uri]);
        let stderr = fails(dir.path(), &args);
        assert!(
            stderr.contains(&db.display().to_string()) && stderr.contains("--create"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("intact"), "{stderr}");
    }
    // Nothing was made on the way.
    assert!(!dir.path().join("typo").exists());

    // --create makes it, and from then on it opens without.
    ok(
        dir.path(),
        &[
            "users",
            "create",
            "root",
            "--role",
            "admin",
            "--create",
            "--backend-store-uri",
            &uri,
        ],
    );
    assert!(db.is_file());
    let users = ok(
        dir.path(),
        &["users", "list", "--json", "--backend-store-uri", &uri],
    );
    let users: serde_json::Value = serde_json::from_str(&users).unwrap();
    assert_eq!(users[0]["name"], "root");

    // A file that is not a slipway store is refused too, not migrated into one.
    let stranger = dir.path().join("other.db");
    std::fs::write(&stranger, b"").unwrap();
    let stderr = fails(
        dir.path(),
        &[
            "users",
            "list",
            "--backend-store-uri",
            &format!("sqlite:///{}", stranger.display()),
        ],
    );
    assert!(stderr.contains("no slipway schema"), "{stderr}");
}

#[test]
fn a_missing_postgresql_database_is_named_once_with_what_to_do() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(database) = runtime.block_on(slipway_testkit::PgDatabase::create()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}_missing", database.name);
    let base = database.uri.rsplit_once('/').unwrap().0;
    let stderr = fails(
        dir.path(),
        &[
            "users",
            "list",
            "--backend-store-uri",
            &format!("{base}/{missing}"),
        ],
    );
    assert!(stderr.contains(&format!("createdb {missing}")), "{stderr}");
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");

    // An empty database is no store until --create gives it the schema.
    let stderr = fails(
        dir.path(),
        &["users", "list", "--backend-store-uri", &database.uri],
    );
    assert!(
        stderr.contains("no slipway schema") && stderr.contains("--create"),
        "{stderr}"
    );
    ok(
        dir.path(),
        &[
            "users",
            "create",
            "root",
            "--role",
            "admin",
            "--create",
            "--backend-store-uri",
            &database.uri,
        ],
    );
    ok(
        dir.path(),
        &["users", "list", "--backend-store-uri", &database.uri],
    );
}

/// A store with `count` audit entries (one per user created), in `dir`'s default location.
fn store_with_entries(dir: &std::path::Path, count: usize) {
    for index in 0..count {
        let mut args = vec!["users", "create"];
        let name = format!("user{index}");
        args.extend([name.as_str(), "--role", "viewer"]);
        if index == 0 {
            args.push("--create");
        }
        ok(dir, &args);
    }
}

#[test]
fn verify_says_no_entries_on_an_empty_log_and_where_a_cut_chain_ends() {
    let dir = tempfile::tempdir().unwrap();
    let empty = ok(dir.path(), &["audit", "verify", "--create"]);
    assert!(empty.contains("no entries"), "{empty}");
    assert!(!empty.contains("intact"), "{empty}");

    store_with_entries(dir.path(), 2);
    let verified = ok(dir.path(), &["audit", "verify", "--json"]);
    let verified: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["head"]["seq"], 2);
    let hash = verified["head"]["hash"].as_str().unwrap();
    ok(
        dir.path(),
        &["audit", "verify", "--expect-head", &format!("2:{hash}")],
    );
    // A head recorded further on than the log goes: entries were cut off the end.
    let stderr = fails(
        dir.path(),
        &["audit", "verify", "--expect-head", &format!("5:{hash}")],
    );
    assert!(
        stderr.contains("ends at entry 2, before entry 5"),
        "{stderr}"
    );
    assert!(!stderr.contains("broken at entry 5"), "{stderr}");
}

#[test]
fn the_audit_log_reads_newest_first_and_says_when_more_exist() {
    let dir = tempfile::tempdir().unwrap();
    store_with_entries(dir.path(), 3);
    let output = slipway(dir.path(), &["audit", "log", "--limit", "2", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let entries: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let seqs: Vec<i64> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2]);
    assert!(
        text(&output.stderr).contains("older ones exist"),
        "{}",
        text(&output.stderr)
    );
    let output = slipway(dir.path(), &["audit", "log", "--limit", "3"]);
    assert!(output.status.success());
    assert!(text(&output.stderr).is_empty(), "{}", text(&output.stderr));
}

#[test]
fn the_audit_actor_is_the_os_user_when_user_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(
        dir.path(),
        &[
            "users",
            "create",
            "nobody-env",
            "--role",
            "viewer",
            "--create",
        ],
    )
    .env_remove("USER")
    .env_remove("USERNAME")
    .env_remove("LOGNAME")
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let entries: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["audit", "log", "--json"])).unwrap();
    let actor = entries[0]["actor"].as_str().unwrap();
    assert!(actor.starts_with("cli:") && actor.len() > 4, "{actor}");
    assert_ne!(actor, "cli:unknown");
}

/// Exited quietly because its reader went away: killed by SIGPIPE (the shell's 141), or 141.
#[cfg(unix)]
pub fn ended_by_a_closed_pipe(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(13) || status.code() == Some(141)
}

#[cfg(unix)]
#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    store_with_entries(dir.path(), 1);
    // The reader is gone before the first line is written, as after `| head -0`.
    let mut child = command(dir.path(), &["audit", "log"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        ended_by_a_closed_pipe(output.status),
        "{:?}: {stderr}",
        output.status
    );
}

#[test]
fn completions_print_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    let bash = ok(dir.path(), &["completions", "bash"]);
    assert!(
        bash.contains("_slipway") && bash.contains("permissions"),
        "{bash}"
    );
    let zsh = ok(dir.path(), &["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef slipway"), "{zsh}");
    let fish = ok(dir.path(), &["completions", "fish"]);
    assert!(fish.contains("complete -c slipway"), "{fish}");
    let stderr = fails(dir.path(), &["completions", "tcsh"]);
    assert!(stderr.contains("bash"), "{stderr}");
}
