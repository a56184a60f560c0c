"""Authentication with the real mlflow client: a server started with --auth, users and tokens
made with slipway's own CLI against the same database, the client authenticating through
MLFLOW_TRACKING_USERNAME/PASSWORD (HTTP Basic) and MLFLOW_TRACKING_TOKEN (Bearer), and the
errors it gets without credentials or without the role."""

from __future__ import annotations

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
    cli(slipway_bin, uri, "users", "create", "root", "--role", "admin", "--password-stdin",
        stdin=ADMIN_PASSWORD + "\n")
    cli(slipway_bin, uri, "users", "create", "alice", "--role", "editor", "--password-stdin",
        stdin=EDITOR_PASSWORD)
    cli(slipway_bin, uri, "users", "create", "victor", "--role", "viewer", "--password-stdin",
        stdin=VIEWER_PASSWORD)
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
