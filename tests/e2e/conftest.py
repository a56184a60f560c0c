"""End-to-end suite: the real `mlflow` Python client against a tracking server.

Target selection:
  * ``E2E_TRACKING_URI=http://host:port``: use that running server as is (e.g. MLflow's own
    server, with ``E2E_TARGET=mlflow`` to skip the ``slipway_only`` tests);
  * otherwise start ``$SLIPWAY_BIN server ...`` on a free port, with the backend store
    ``$E2E_BACKEND_STORE_URI`` (e.g. a fresh postgresql://... database) or a SQLite file in a
    temporary directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Client knobs: fail fast instead of the client's default 7 retries with 2 s backoff on 5xx,
# and never phone home. Set before mlflow is imported anywhere.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
os.environ.pop("MLFLOW_RUN_ID", None)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from e2e_support import IS_MLFLOW, Api, SlipwayServer, unique_name  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slipway_only: slipway extensions, tests that start/kill their own slipway server, or "
        "checks where MLflow has a known bug; skipped when E2E_TARGET=mlflow")
    config.addinivalue_line(
        "markers",
        "backend_independent: what the test checks happens outside the metadata store (a "
        "client-side conversion); run once when both backends' passes run at once")


def pytest_collection_modifyitems(config, items):
    # scripts/test.sh runs the PostgreSQL pass beside the SQLite one: tests whose subject does
    # not touch the metadata store then run once, in the PostgreSQL pass.
    if os.environ.get("E2E_BACKEND_INDEPENDENT_ELSEWHERE") == "1":
        elsewhere = pytest.mark.skip(reason="backend_independent: runs in the PostgreSQL pass beside this one")
        for item in items:
            if "backend_independent" in item.keywords:
                item.add_marker(elsewhere)
    if not IS_MLFLOW:
        return
    skip = pytest.mark.skip(reason="slipway_only (E2E_TARGET=mlflow)")
    for item in items:
        if "slipway_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tracking_uri():
    uri = os.environ.get("E2E_TRACKING_URI")
    server = None
    tmp = None
    if uri:
        uri = uri.rstrip("/")
    else:
        binary = os.environ.get("SLIPWAY_BIN")
        if not binary:
            pytest.fail("set E2E_TRACKING_URI (an already running server) or SLIPWAY_BIN "
                        "(path of the slipway binary to start)", pytrace=False)
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            pytest.fail(f"SLIPWAY_BIN={binary} is not an executable file", pytrace=False)
        tmp = Path(tempfile.mkdtemp(prefix="slipway-e2e-"))
        # E2E_ARTIFACTS_DESTINATION (scripts/test.sh: an S3 bucket on moto's server, in the
        # PostgreSQL pass) puts the suite's server's artifacts there; private servers keep
        # theirs in folders, where some tests look at the files.
        server = SlipwayServer(binary, tmp,
                               backend_store_uri=os.environ.get("E2E_BACKEND_STORE_URI") or None,
                               artifacts_destination=os.environ.get("E2E_ARTIFACTS_DESTINATION")
                               or None)
        try:
            server.start()
        except RuntimeError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(str(e), pytrace=False)
        uri = server.url

    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env
        if server is not None:
            stderr_tail = None
            clean = server.stop(timeout=10)
            if not clean:
                stderr_tail = server.stderr()
            shutil.rmtree(tmp, ignore_errors=True)
            if not clean:
                pytest.fail("slipway did not exit within 10 s of SIGTERM (killed)\n"
                            f"--- stderr ---\n{stderr_tail}", pytrace=False)


@pytest.fixture(autouse=True)
def _client_env(tracking_uri, monkeypatch):
    """Every test talks to the target server; no active run leaks from one test to the next."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def client(tracking_uri) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@pytest.fixture
def api(tracking_uri) -> Api:
    return Api(tracking_uri)


@pytest.fixture
def name():
    """Factory of unique names: name("exp") -> 'exp-<12 hex>'."""
    return unique_name


@pytest.fixture
def experiment_id(client, request) -> str:
    """A fresh experiment, made the active one for the fluent API."""
    exp_name = unique_name(f"e2e-{request.node.name[:40]}")
    exp_id = client.create_experiment(exp_name)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@pytest.fixture
def slipway_bin():
    binary = os.environ.get("SLIPWAY_BIN")
    if not binary:
        pytest.skip("needs SLIPWAY_BIN (starts its own slipway server)")
    return binary


@pytest.fixture
def slipway_factory(slipway_bin, tmp_path):
    """Start private slipway servers (SQLite in tmp_path); all are stopped at the end."""
    started: list[SlipwayServer] = []

    def start(workdir: Path | None = None, port: int | None = None,
              extra_args: list[str] | None = None) -> SlipwayServer:
        srv = SlipwayServer(slipway_bin, workdir or tmp_path, port=port, extra_args=extra_args)
        started.append(srv)
        try:
            srv.start()
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)
        return srv

    yield start
    for srv in started:
        srv.stop(timeout=10)


class _FreshPostgres:
    """Makes fresh PostgreSQL databases beside the PostgreSQL pass's own (E2E_BACKEND_STORE_URI)
    and drops them when closed."""

    def __init__(self, base: str):
        from urllib.parse import urlsplit, urlunsplit

        self.parts = urlsplit(base)
        self.admin = urlunsplit(self.parts._replace(scheme="postgres"))
        self.made: list[str] = []

    def __call__(self) -> str:
        import uuid
        from urllib.parse import urlunsplit

        import psycopg

        name = f"slipway_e2e_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.made.append(name)
        return urlunsplit(self.parts._replace(path=f"/{name}"))

    def close(self):
        if not self.made:
            return
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _postgres_base() -> str:
    base = os.environ.get("E2E_BACKEND_STORE_URI", "")
    return base if base.startswith("postgresql://") else ""


@pytest.fixture
def fresh_postgres():
    """A maker of fresh PostgreSQL databases; skips outside the PostgreSQL pass."""
    base = _postgres_base()
    if not base:
        pytest.skip("needs PostgreSQL: runs in the PostgreSQL pass (E2E_BACKEND_STORE_URI=postgresql://...)")
    maker = _FreshPostgres(base)
    yield maker
    maker.close()


@pytest.fixture
def fresh_postgres_optional():
    """The same in the PostgreSQL pass; None elsewhere (for tests that also run on SQLite)."""
    base = _postgres_base()
    maker = _FreshPostgres(base) if base else None
    yield maker
    if maker:
        maker.close()
