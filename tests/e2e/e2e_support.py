"""Helpers shared by the end-to-end tests: starting/stopping a slipway server, raw REST calls."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import requests

TARGET = os.environ.get("E2E_TARGET", "slipway").lower()
IS_MLFLOW = TARGET == "mlflow"


def unique_name(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms() -> int:
    return int(time.time() * 1000)


class SlipwayServer:
    """A slipway server process started from $SLIPWAY_BIN.

    ``backend_store_uri`` defaults to a SQLite file in ``workdir``; artifacts go to
    ``workdir/artifacts`` unless ``artifacts_destination`` names another place (an
    ``s3://`` bucket). The same workdir/uri can be reused to restart on the same data.
    """

    def __init__(self, binary: str, workdir: Path, backend_store_uri: str | None = None,
                 port: int | None = None, extra_args: list[str] | None = None,
                 artifacts_destination: str | None = None, ca_cert: str | None = None):
        self.binary = binary
        self.extra_args = list(extra_args or [])
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.workdir / 'slipway.db'}"
        self.artifacts = self.workdir / "artifacts"
        self.artifacts_destination = artifacts_destination or str(self.artifacts)
        self.port = port or free_port()
        # With TLS (--tls-cert in extra_args), the CA that signed the server's certificate.
        self.ca_cert = ca_cert
        self.url = f"{'https' if ca_cert else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._stderr_file = None
        self._stdout_file = None

    def start(self, timeout: float | None = None) -> "SlipwayServer":
        if timeout is None:
            timeout = float(os.environ.get("E2E_SERVER_START_TIMEOUT", "30"))
        cmd = [
            self.binary, "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", self.artifacts_destination,
            *self.extra_args,
        ]
        # Capture output in files (pipes could fill up and block the server).
        self._stderr_file = tempfile.NamedTemporaryFile(
            prefix="slipway-stderr-", suffix=".log", dir=self.workdir, delete=False)
        self._stdout_file = tempfile.NamedTemporaryFile(
            prefix="slipway-stdout-", suffix=".log", dir=self.workdir, delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self._stdout_file, stderr=self._stderr_file,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"slipway exited early with code {self.proc.returncode}: {' '.join(cmd)}\n"
                    f"--- stderr ---\n{self.stderr()}\n--- stdout ---\n{self.stdout()}")
            try:
                r = requests.get(self.url + "/health", timeout=2, verify=self.ca_cert or True)
                if r.status_code == 200:
                    return self
                last_err = f"HTTP {r.status_code}"
            except requests.RequestException as e:  # not listening yet
                last_err = repr(e)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"slipway did not answer GET /health with 200 within {timeout}s (last: {last_err})\n"
            f"command: {' '.join(cmd)}\n--- stderr ---\n{self.stderr()}\n--- stdout ---\n{self.stdout()}")

    def _read(self, f) -> str:
        if f is None:
            return ""
        try:
            return Path(f.name).read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def stderr(self) -> str:
        return self._read(self._stderr_file)

    def stdout(self) -> str:
        return self._read(self._stdout_file)

    def kill(self) -> None:
        """SIGKILL (simulated crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns True if it exited on SIGTERM."""
        if not self.proc or self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return False


class Api:
    """Minimal raw REST client (for checks the MLflow client would hide)."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()

    def url(self, path: str) -> str:
        if path.startswith("/"):
            return self.base + path
        return f"{self.base}/api/2.0/mlflow/{path}"

    def get(self, path, params=None, **kw):
        return self.session.get(self.url(path), params=params, timeout=kw.pop("timeout", 60), **kw)

    def post(self, path, json=None, **kw):
        return self.session.post(self.url(path), json=json, timeout=kw.pop("timeout", 60), **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        return self.session.request(method, self.url(path), **kw)


def assert_error_body(resp, error_code: str | None = None, status: int | None = None):
    """The response is an MLflow-style JSON error: {"error_code": ..., "message": ...}."""
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error_code"), str) and body["error_code"], body
    assert isinstance(body.get("message"), str), body
    if error_code is not None:
        assert body["error_code"] == error_code, body
    return body


def metric_history(base_url: str, run_id: str, key: str, page_size: int = 25000) -> list[dict]:
    """All points of a metric through raw GET metrics/get-history, following next_page_token."""
    out: list[dict] = []
    token = None
    with requests.Session() as s:
        for _ in range(10_000):
            params = {"run_id": run_id, "metric_key": key, "max_results": page_size}
            if token:
                params["page_token"] = token
            r = s.get(f"{base_url}/api/2.0/mlflow/metrics/get-history", params=params, timeout=120)
            assert r.status_code == 200, (r.status_code, r.text[:500])
            body = r.json()
            out += body.get("metrics", [])
            token = body.get("next_page_token")
            if not token:
                return out
    raise AssertionError("get-history paging did not terminate")


def search_all_runs(base_url: str, experiment_id: str, page_size: int = 1000) -> list[dict]:
    out: list[dict] = []
    token = None
    with requests.Session() as s:
        for _ in range(10_000):
            body = {"experiment_ids": [experiment_id], "max_results": page_size,
                    "run_view_type": "ALL"}
            if token:
                body["page_token"] = token
            r = s.post(f"{base_url}/api/2.0/mlflow/runs/search", json=body, timeout=120)
            assert r.status_code == 200, (r.status_code, r.text[:500])
            js = r.json()
            out += js.get("runs", [])
            token = js.get("next_page_token")
            if not token:
                return out
    raise AssertionError("runs/search paging did not terminate")


def wait_ready(url: str, process, log: Path, timeout: float = 60) -> None:
    """Waits until `url` answers 200, failing with the process's log if it exits or the time
    runs out (a replica's or a `slipway serve`'s /ping)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)



def register_folder(client, model: str, folder: Path, versions: int = 1) -> None:
    """Registers `folder` (an MLflow model folder) as `versions` new versions of `model`
    (created here), each logged by a run of its own in the Default experiment, as a data
    scientist would with the mlflow client."""
    client.create_registered_model(model)
    experiment = client.get_experiment_by_name("Default").experiment_id
    for _ in range(versions):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.create_model_version(model, f"runs:/{run.info.run_id}/model",
                                    run_id=run.info.run_id)


def cli_for(binary: str, url: str, timeout: float = 60):
    """`cli(*args, check=True)`: runs `slipway ARGS` against the server at `url` (as
    MLFLOW_TRACKING_URI) and returns the finished process, failing the test with its output
    unless it succeeded or `check` is False."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=url)

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([binary, *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if check:
            assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
        return result

    return cli
