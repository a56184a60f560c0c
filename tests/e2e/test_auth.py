"""Authentication with the real mlflow client: a server started with --auth, users and tokens
made with slipway's own CLI against the same database, the client authenticating through
MLFLOW_TRACKING_USERNAME/PASSWORD (HTTP Basic) and MLFLOW_TRACKING_TOKEN (Bearer), and the
errors it gets without credentials or without the role."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from e2e_support import unique_name

pytestmark = pytest.mark.slipway_only

ADMIN_PASSWORD = "admin-password-1"
EDITOR_PASSWORD = "editor-password-1"
VIEWER_PASSWORD = "viewer-password-1"
APPROVER_PASSWORD = "approver-password-1"


def cli(binary: str, uri: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([binary, *args, "--backend-store-uri", uri], input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"slipway {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def auth_server(slipway_factory, slipway_bin, tmp_path):
    workdir = tmp_path / "auth-server"
    workdir.mkdir()
    uri = f"sqlite:///{workdir / 'slipway.db'}"
    # The first command makes the store (--create); the rest must find it.
    cli(slipway_bin, uri, "users", "create", "root", "--role", "admin", "--password-stdin",
        "--create", stdin=ADMIN_PASSWORD + "\n")
    cli(slipway_bin, uri, "users", "create", "alice", "--role", "editor", "--password-stdin",
        stdin=EDITOR_PASSWORD)
    cli(slipway_bin, uri, "users", "create", "victor", "--role", "viewer", "--password-stdin",
        stdin=VIEWER_PASSWORD)
    cli(slipway_bin, uri, "users", "create", "bob", "--role", "approver", "--password-stdin",
        stdin=APPROVER_PASSWORD)
    cli(slipway_bin, uri, "users", "create", "ci-bot", "--role", "editor")
    token = cli(slipway_bin, uri, "tokens", "create", "--user", "ci-bot", "--expires-in", "1d").strip()
    assert token.startswith("slw_"), token
    srv = slipway_factory(workdir=workdir, extra_args=["--auth"])
    return srv, uri, token


@pytest.fixture
def as_user(monkeypatch):
    def use(user: str | None = None, password: str | None = None, token: str | None = None):
        for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        if user is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or "")
        if token is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    yield use
    use()


def _flow(client: MlflowClient, uri: str, tmp_path, label: str):
    """A data scientist's flow: experiment, run with params/metrics/tags, artifact up and
    down, registry with an alias, search, and models:/ download."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp_id = client.create_experiment(unique_name(f"auth-{label}"))
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_metrics({"loss": 0.5, "auc": 0.91}, step=1)
        mlflow.set_tag("team", label)
        src = tmp_path / f"{label}-model"
        src.mkdir()
        (src / "weights.txt").write_text(label)
        mlflow.log_artifacts(str(src), artifact_path="model")
    run_id = run.info.run_id
    found = client.search_runs([exp_id], filter_string="metrics.auc > 0.9")
    assert [r.info.run_id for r in found] == [run_id]
    down = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model",
                                               dst_path=str(tmp_path / f"{label}-down"))
    assert (tmp_path / f"{label}-down" / "model" / "weights.txt").read_text() == label, down
    model = unique_name(f"auth-model-{label}")
    client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model, "candidate", version.version)
    assert client.get_model_version_by_alias(model, "candidate").run_id == run_id
    loaded = mlflow.artifacts.download_artifacts(f"models:/{model}@candidate",
                                                 dst_path=str(tmp_path / f"{label}-alias"))
    assert (tmp_path / f"{label}-alias" / "weights.txt").read_text() == label, loaded


def test_basic_credentials_run_the_whole_flow(auth_server, as_user, tmp_path):
    srv, _, _ = auth_server
    as_user("alice", EDITOR_PASSWORD)
    _flow(MlflowClient(srv.url, srv.url), srv.url, tmp_path, "basic")


def test_a_token_runs_the_whole_flow(auth_server, as_user, tmp_path):
    srv, _, token = auth_server
    as_user(token=token)
    _flow(MlflowClient(srv.url, srv.url), srv.url, tmp_path, "token")


def test_no_credentials_is_401_in_mlflow_json(auth_server, as_user):
    srv, _, _ = auth_server
    as_user()
    with pytest.raises(MlflowException) as raised:
        MlflowClient(srv.url).search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED", raised.value
    r = requests.get(f"{srv.url}/api/2.0/mlflow/experiments/search", timeout=10)
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    assert "MLFLOW_TRACKING_USERNAME" in r.json()["message"]
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    # Probes stay open.
    assert requests.get(f"{srv.url}/health", timeout=10).status_code == 200


def test_wrong_password_and_wrong_role(auth_server, as_user):
    srv, _, _ = auth_server
    as_user("alice", "not-her-password")
    with pytest.raises(MlflowException) as raised:
        MlflowClient(srv.url).search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED"
    as_user("victor", VIEWER_PASSWORD)
    client = MlflowClient(srv.url)
    client.search_experiments()  # a viewer reads
    with pytest.raises(MlflowException) as raised:
        client.create_experiment(unique_name("viewer-may-not"))
    assert raised.value.error_code == "PERMISSION_DENIED", raised.value
    assert "viewer" in str(raised.value)


def test_revoking_a_token_with_the_cli_locks_it_out_of_the_running_server(
        auth_server, as_user, slipway_bin):
    srv, uri, token = auth_server
    as_user(token=token)
    client = MlflowClient(srv.url)
    client.search_experiments()  # verified and cached by the server
    listed = cli(slipway_bin, uri, "tokens", "list", "--user", "ci-bot", "--json")
    token_id = token.split("_")[1]
    assert token_id in listed and token not in listed
    cli(slipway_bin, uri, "tokens", "revoke", token_id)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.search_experiments()
        except MlflowException as e:
            assert e.error_code == "UNAUTHENTICATED"
            break
        assert time.monotonic() < deadline, "the revoked token still worked after 10 s"
        time.sleep(0.2)


def test_the_cli_refuses_bad_input_with_a_message(auth_server, slipway_bin):
    _, uri, _ = auth_server
    bad_role = subprocess.run([slipway_bin, "users", "create", "zed", "--role", "root",
                               "--backend-store-uri", uri], capture_output=True, text=True, timeout=60)
    assert bad_role.returncode != 0
    assert "viewer, editor, approver, admin" in bad_role.stderr
    duplicate = subprocess.run([slipway_bin, "users", "create", "alice", "--role", "viewer",
                                "--backend-store-uri", uri], capture_output=True, text=True, timeout=60)
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    short = subprocess.run([slipway_bin, "users", "create", "zed", "--role", "viewer", "--password-stdin",
                            "--backend-store-uri", uri], input="short\n", capture_output=True, text=True,
                           timeout=60)
    assert short.returncode != 0 and "at least 8" in short.stderr
    users = cli(slipway_bin, uri, "users", "list")
    assert "alice" in users and "editor" in users
    assert ADMIN_PASSWORD not in users and "argon2" not in users


def remote(binary: str, url: str, user: str, password: str, *args: str,
           expect_ok: bool = True) -> subprocess.CompletedProcess:
    """A `slipway` command that talks to the server as `user` (the mlflow client's env vars)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME=user,
               MLFLOW_TRACKING_PASSWORD=password)
    result = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)
    if expect_ok:
        assert result.returncode == 0, f"slipway {' '.join(args)} as {user}:\n{result.stderr}"
    return result


def test_promotion_approval_rollback_and_audit(auth_server, as_user, slipway_bin, tmp_path):
    srv, uri, _ = auth_server
    as_user("alice", EDITOR_PASSWORD)
    client = MlflowClient(srv.url, srv.url)
    mlflow.set_tracking_uri(srv.url)
    exp_id = client.create_experiment(unique_name("governed"))
    model = unique_name("governed-model")
    client.create_registered_model(model)
    for auc in (0.95, 0.97):
        with mlflow.start_run(experiment_id=exp_id) as run:
            mlflow.log_metric("auc", auc)
            mlflow.set_tag("validation", "passed")
        client.create_model_version(model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

    remote(slipway_bin, srv.url, "root", ADMIN_PASSWORD, "policy", "set", model,
           "--checks", "metrics.auc >= 0.9 and tags.validation = 'passed'")

    # MLflow's own set-alias is refused without an approved promotion.
    with pytest.raises(MlflowException) as raised:
        client.set_registered_model_alias(model, "production", "1")
    assert raised.value.error_code == "PERMISSION_DENIED"
    assert "slipway promote request" in str(raised.value)

    requested = remote(slipway_bin, srv.url, "alice", EDITOR_PASSWORD, "promote", "request", model, "1",
                       "--to", "production", "--reason", "first release", "--json")
    request_id = json.loads(requested.stdout)["promotion"]["id"]
    own = remote(slipway_bin, srv.url, "alice", EDITOR_PASSWORD, "promote", "approve", str(request_id),
                 expect_ok=False)
    assert own.returncode != 0 and "PERMISSION_DENIED" in own.stderr
    remote(slipway_bin, srv.url, "bob", APPROVER_PASSWORD, "promote", "approve", str(request_id),
           "--reason", "metrics reviewed")
    assert client.get_model_version_by_alias(model, "production").version == "1"

    second = remote(slipway_bin, srv.url, "alice", EDITOR_PASSWORD, "promote", "request", model, "2",
                    "--to", "production", "--json")
    remote(slipway_bin, srv.url, "bob", APPROVER_PASSWORD, "promote", "approve",
           str(json.loads(second.stdout)["promotion"]["id"]))
    assert client.get_model_version_by_alias(model, "production").version == "2"
    remote(slipway_bin, srv.url, "bob", APPROVER_PASSWORD, "models", "rollback", model, "--alias", "production")
    assert client.get_model_version_by_alias(model, "production").version == "1"

    lineage = json.loads(remote(slipway_bin, srv.url, "victor", VIEWER_PASSWORD, "lineage",
                                f"models:/{model}/1", "--json").stdout)
    assert lineage["model_version"]["registered_by"] == "alice"
    assert lineage["run"]["data"]["metrics"][0]["key"] == "auc"
    assert lineage["promotions"][0]["decisions"][0]["user"] == "bob"
    assert [c["via"] for c in lineage["alias_history"]][-1] == "rollback"

    entries = json.loads(cli(slipway_bin, uri, "audit", "log", "--resource",
                             f"registered_model:{model}", "--json"))
    seen = {(e["action"], e["actor"], e["outcome"]) for e in entries}
    for expected in [("registry.protected_change", "alice", "denied"),
                     ("promotions.request", "alice", "ok"),
                     ("promotions.approve", "bob", "ok"),
                     ("registry.rollback_alias", "bob", "ok")]:
        assert expected in seen, (expected, seen)

    # Alice's attempt to approve her own request was refused by role and recorded too.
    alice = json.loads(cli(slipway_bin, uri, "audit", "log", "--actor", "alice", "--json"))
    assert any(e["action"] == "request.denied" and "approve" in json.dumps(e["summary"])
               for e in alice), alice

    # The chain verifies; an export has every entry, one JSON object per line, in order.
    assert "audit chain intact" in cli(slipway_bin, uri, "audit", "verify")
    export = tmp_path / "audit.jsonl"
    cli(slipway_bin, uri, "audit", "export", "--output", str(export))
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    assert [e["seq"] for e in exported] == list(range(1, len(exported) + 1))
    assert len(exported) >= len(entries) + len(alice)
    assert ADMIN_PASSWORD not in export.read_text() and "argon2" not in export.read_text()

    # An edit made behind the store's back is named by entry.
    target = entries[2]["seq"]
    db = sqlite3.connect(uri.removeprefix("sqlite:///"))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?", (target,))
    db.execute("DROP TRIGGER audit_log_no_update")
    db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?", (target,))
    db.commit()
    db.close()
    broken = subprocess.run([slipway_bin, "audit", "verify", "--backend-store-uri", uri],
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0
    assert f"entry {target}" in broken.stderr, broken.stderr


def test_a_flood_of_refusals_is_summarized_and_request_ids_are_ours(
        auth_server, slipway_bin):
    srv, uri, _ = auth_server
    url = f"{srv.url}/api/2.0/mlflow/experiments/search"
    flood = 200
    ours = set()
    for _ in range(flood):
        r = requests.get(url, headers={"x-request-id": "attacker"}, timeout=10)
        assert r.status_code == 401
        assert r.headers["x-request-id"] != "attacker"
        ours.add(r.headers["x-request-id"])
    assert len(ours) == flood
    entries = json.loads(cli(slipway_bin, uri, "audit", "log", "--json"))
    refused = [e for e in entries if e["action"] == "request.denied"]
    # The first refusal is written at once, under the server's request id.
    assert len(refused) == 1, refused
    assert refused[0]["request_id"] in ours
    assert "attacker" in json.dumps(refused[0]["summary"])  # as client_request_id only
    # Shutdown writes the rest of the window as one summary.
    assert srv.stop(timeout=10)
    entries = json.loads(cli(slipway_bin, uri, "audit", "log", "--json"))
    summaries = [e for e in entries if e["action"] == "request.denied.summary"]
    assert len(summaries) == 1, summaries
    summary = summaries[0]["summary"]
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["count"] == flood - 1
    assert summary["kind"] == "unauthenticated" and summary["client"] == "127.0.0.1"
    assert "audit chain intact" in cli(slipway_bin, uri, "audit", "verify")
