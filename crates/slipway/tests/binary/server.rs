//! The binary as a user runs it: start-up on a fresh folder, refusal of a schema from the
//! future, refusal to listen publicly without auth, graceful shutdown on SIGTERM; and the CLI's
//! remote commands against a live server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_slipway");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

fn post(port: u16, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// `slipway ARGS` against the server on `port`, with no credentials or settings from the
/// environment beyond `env`.
fn cli(port: u16, dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("SLIPWAY_") || name.starts_with("MLFLOW_") {
            command.env_remove(name);
        }
    }
    command.env("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{port}"));
    command.envs(env.iter().copied());
    command
}

fn run_ok(mut command: Command) -> String {
    let output = command.output().expect("running slipway");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn start(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    Command::new(BIN)
        .current_dir(dir)
        .args(["server", "--port", &port.to_string()])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning slipway")
}

fn wait_healthy(port: u16, child: &mut Child) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Some((200, _)) = get(port, "/health") {
            return started.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("slipway exited early with {status}: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("slipway did not become healthy in 20 s");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("slipway did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn starts_on_the_embedded_default_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port, &[]);
    wait_healthy(port, &mut child);
    assert!(dir.path().join("slipway-data/slipway.db").exists());
    assert!(dir.path().join("slipway-data/artifacts").is_dir());
    let (status, body) = get(port, "/api/2.0/mlflow/experiments/get?experiment_id=0").unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["experiment"]["name"], "Default");
    assert_eq!(
        body["experiment"]["artifact_location"],
        "mlflow-artifacts:/0"
    );
    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status}");

    // A second start on the same data re-runs the migrations harmlessly.
    let mut child = start(dir.path(), port, &[]);
    wait_healthy(port, &mut child);
    assert!(terminate(&mut child).success());
}

#[test]
fn refuses_a_schema_written_by_a_newer_slipway() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port, &[]);
    wait_healthy(port, &mut child);
    assert!(terminate(&mut child).success());

    let db = dir.path().join("slipway-data/slipway.db");
    let status = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect('{}'); c.execute(\"INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)\"); c.commit()",
            db.display()
        ))
        .status()
        .expect("python3 to edit the database");
    assert!(status.success());

    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args(["server", "--port", &free_port().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("newer slipway"), "{stderr}");
}

#[test]
fn refuses_a_public_address_without_auth_and_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
}

#[test]
fn reads_settings_from_the_config_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("slipway.toml"),
        format!("[server]\nport = {port}\nbackend_store_uri = \"sqlite:///meta/x.db\"\n"),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["server"])
        .env("SLIPWAY_ARTIFACTS_DESTINATION", dir.path().join("arts"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);
    assert!(dir.path().join("meta/x.db").exists());
    assert!(dir.path().join("arts").is_dir());
    assert!(terminate(&mut child).success());
    let mut lines = Vec::new();
    if let Some(pipe) = child.stderr.take() {
        lines = BufReader::new(pipe).lines().map_while(Result::ok).collect();
    }
    assert!(lines.iter().any(|l| l.contains("listening")), "{lines:?}");
    // Not a terminal: no colour codes in the log.
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:?}");
}

#[test]
fn a_broken_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slipway.toml"), "[server]\nprot = 1\n").unwrap();
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .arg("server")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("slipway.toml") && stderr.contains("prot"),
        "{stderr}"
    );
}

#[test]
fn boolean_settings_from_the_environment_accept_1_and_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // SLIPWAY_AUTH=1 turns authentication on (clap's plain bool parser took only true/false).
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["server", "--port", &port.to_string()])
        .env("SLIPWAY_AUTH", "1")
        .env("SLIPWAY_INSECURE_NO_AUTH", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);
    let (status, _) = get(port, "/api/2.0/mlflow/experiments/search?max_results=1").unwrap();
    assert_eq!(status, 401);
    assert!(terminate(&mut child).success());

    // SLIPWAY_INSECURE_NO_AUTH=0 is off: a public address is still refused.
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            &free_port().to_string(),
        ])
        .env("SLIPWAY_INSECURE_NO_AUTH", "0")
        .env_remove("SLIPWAY_AUTH")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port, &[]);
    wait_healthy(port, &mut child);
    // The reader is gone before the first line is written (`slipway deploy list | head -0`).
    let mut piped = cli(port, dir.path(), &["deploy", "list"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(piped.stdout.take());
    let output = piped.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.status.signal() == Some(13) || output.status.code() == Some(141),
        "{:?}: {stderr}",
        output.status
    );
    assert!(terminate(&mut child).success());
}

#[test]
fn permissions_are_granted_listed_and_revoked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port, &[]);
    wait_healthy(port, &mut child);
    // The server runs without auth, so the caller is an admin. The user is made on the
    // server's store directly.
    run_ok(cli(
        port,
        dir.path(),
        &["users", "create", "alice", "--role", "viewer"],
        &[],
    ));
    let granted = run_ok(cli(
        port,
        dir.path(),
        &[
            "permissions",
            "grant",
            "--user",
            "alice",
            "--experiment",
            "0",
            "--permission",
            "edit",
            "--json",
        ],
        &[],
    ));
    let granted: serde_json::Value = serde_json::from_str(&granted).unwrap();
    assert_eq!(granted["permission"], "EDIT");
    let listed = run_ok(cli(
        port,
        dir.path(),
        &["permissions", "list", "--json"],
        &[],
    ));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["permissions"],
        serde_json::json!([{"user": "alice", "resource_type": "experiment", "resource_id": "0", "permission": "EDIT"}])
    );
    run_ok(cli(
        port,
        dir.path(),
        &[
            "permissions",
            "revoke",
            "--user",
            "alice",
            "--experiment",
            "0",
        ],
        &[],
    ));
    let listed = run_ok(cli(
        port,
        dir.path(),
        &["permissions", "list", "--json"],
        &[],
    ));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["permissions"], serde_json::json!([]));
    assert!(terminate(&mut child).success());
}

#[test]
fn a_version_named_by_alias_is_resolved_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port, &[]);
    wait_healthy(port, &mut child);
    let api = "/api/2.0/mlflow";
    let (status, body) = post(
        port,
        &format!("{api}/registered-models/create"),
        &serde_json::json!({"name": "fraud"}),
    );
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        let (status, body) = post(
            port,
            &format!("{api}/model-versions/create"),
            &serde_json::json!({"name": "fraud", "source": "s3://bucket/fraud"}),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(
        port,
        &format!("{api}/registered-models/alias"),
        &serde_json::json!({"name": "fraud", "alias": "staging", "version": "2"}),
    );
    assert_eq!(status, 200, "{body}");
    let lineage = run_ok(cli(
        port,
        dir.path(),
        &["lineage", "models:/fraud@staging", "--json"],
        &[],
    ));
    let lineage: serde_json::Value = serde_json::from_str(&lineage).unwrap();
    assert_eq!(lineage["model_version"]["version"], 2, "{lineage}");
    run_ok(cli(
        port,
        dir.path(),
        &["policy", "set", "fraud", "--approvals", "2"],
        &[],
    ));
    let requested = run_ok(cli(
        port,
        dir.path(),
        &[
            "promote",
            "request",
            "models:/fraud@staging",
            "--to",
            "production",
        ],
        &[],
    ));
    assert!(requested.contains("version 2"), "{requested}");
    // How far it is, and the exact command that takes it further.
    assert!(
        requested.contains("0 of 2 approvals") && requested.contains("slipway promote approve 1"),
        "{requested}"
    );
    assert!(terminate(&mut child).success());
}

#[test]
fn a_refused_login_is_explained_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port, &["--auth"]);
    wait_healthy(port, &mut child);
    let output = cli(port, dir.path(), &["promote", "list"], &[])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("MLFLOW_TRACKING_TOKEN").count(),
        1,
        "{stderr}"
    );
    let output = cli(
        port,
        dir.path(),
        &["promote", "list"],
        &[
            ("MLFLOW_TRACKING_USERNAME", "mallory"),
            ("MLFLOW_TRACKING_PASSWORD", "guess-guess"),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid credentials") && stderr.contains("user 'mallory'"),
        "{stderr}"
    );
    assert!(terminate(&mut child).success());
}
