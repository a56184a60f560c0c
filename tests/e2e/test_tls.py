"""TLS end to end, with certificates this test makes (a CA, the servers' certificates, client
certificates, and a stranger's CA): the real mlflow client over HTTPS with
MLFLOW_TRACKING_SERVER_CERT_PATH, and with a client certificate instead of a password
(MLFLOW_TRACKING_CLIENT_CERT_PATH); the CLI with --ca-cert; a replica that serves HTTPS itself
and authenticates to the server by its certificate alone (mutual TLS), driving a rollout; a
`slipway serve` that takes only clients with a certificate; and the refusal to take credentials
in clear on a public address."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mlflow import MlflowClient

from e2e_support import SlipwayServer, free_port, register_folder, unique_name
from test_deployments import EXAMPLE, MLFLOW_MODEL, ROWS, _require_runtime

pytestmark = pytest.mark.slipway_only

ROOT_PASSWORD = "root-password-1"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                   "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """A CA that issues server and client certificates into `folder`."""

    def __init__(self, folder: Path, label: str = "slipway test"):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = _name(f"{label} CA")
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject).issuer_name(self.subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        self.ca = folder / "ca.pem"
        self.ca.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, server: bool = False) -> tuple[Path, Path, Path]:
        """(certificate, key, both in one file) for `common_name`; a server's certificate names
        127.0.0.1 and localhost."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(self.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        stem = self.folder / common_name.replace(".", "-")
        paths = (stem.with_suffix(".crt"), stem.with_suffix(".key"), stem.with_suffix(".pem"))
        paths[0].write_bytes(cert)
        paths[1].write_bytes(_pem(key))
        paths[2].write_bytes(cert + _pem(key))
        return paths


def _store_cli(binary: str, uri: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([binary, *args, "--backend-store-uri", uri], input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"slipway {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


class TlsEnv:
    """A server with --auth over HTTPS that takes client certificates from the test CA, and
    its users: root (admin, password), alice (editor) and replica-1 (replica), the last two
    with no password at all: their certificates are all they have."""

    def __init__(self, binary: str, tmp_path: Path):
        self.bin = binary
        self.pki = Pki(tmp_path / "pki")
        cert, key, _ = self.pki.issue("127.0.0.1", server=True)
        self.server_cert, self.server_key = cert, key
        workdir = tmp_path / "server"
        workdir.mkdir()
        self.uri = f"sqlite:///{workdir / 'slipway.db'}"
        _store_cli(binary, self.uri, "users", "create", "root", "--role", "admin",
                   "--password-stdin", "--create", stdin=ROOT_PASSWORD)
        _store_cli(binary, self.uri, "users", "create", "alice", "--role", "editor")
        _store_cli(binary, self.uri, "users", "create", "replica-1", "--role", "replica")
        self.server = SlipwayServer(
            binary, workdir, extra_args=["--auth", "--tls-cert", str(cert), "--tls-key", str(key),
                                         "--client-ca", str(self.pki.ca)],
            ca_cert=str(self.pki.ca))
        self.server.start()
        self.root = requests.Session()
        # REQUESTS_CA_BUNDLE, where set, would override the session's CA.
        self.root.trust_env = False
        self.root.verify = str(self.pki.ca)
        self.root.auth = ("root", ROOT_PASSWORD)

    def cli(self, *args: str, env: dict[str, str] | None = None, check: bool = True):
        base = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
        base["MLFLOW_TRACKING_URI"] = self.server.url
        result = subprocess.run([self.bin, *args], env={**base, **(env or {})},
                                capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
        return result

    def as_root(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": "root", "MLFLOW_TRACKING_PASSWORD": ROOT_PASSWORD}

    def audit(self, **params) -> list[dict]:
        r = self.root.get(f"{self.server.url}/api/slipway/v1/audit", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["entries"]

    def close(self):
        self.server.stop(timeout=10)


@pytest.fixture
def tls_env(slipway_bin, tmp_path, monkeypatch):
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    environment = TlsEnv(slipway_bin, tmp_path)
    yield environment
    environment.close()


def test_the_mlflow_client_works_over_https_with_a_password_or_a_certificate(tls_env, monkeypatch,
                                                                              tmp_path):
    url = tls_env.server.url
    assert url.startswith("https://")
    # Plain HTTP to the TLS port gets no answer, and a client that trusts only the system's
    # roots refuses the server's certificate.
    with pytest.raises(requests.RequestException):
        requests.get(url.replace("https://", "http://") + "/health", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/health", timeout=5)

    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tls_env.pki.ca))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "root")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ROOT_PASSWORD)
    client = MlflowClient(url, url)
    experiment = client.create_experiment(unique_name("tls"))
    run = client.create_run(experiment)
    for step in range(5):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    notes = tmp_path / "notes.txt"
    notes.write_text("over TLS")
    client.log_artifact(run.info.run_id, str(notes))
    client.set_terminated(run.info.run_id)
    down = client.download_artifacts(run.info.run_id, "notes.txt", str(tmp_path / "down"))
    assert Path(down).read_text() == "over TLS"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(5))

    # Alice has no password: her certificate (with its key, one file, as the mlflow client
    # takes it) is who she is.
    _, _, alice = tls_env.pki.issue("alice")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(alice))
    name = unique_name("by-alice")
    by_alice = client.create_experiment(name)
    created = [e for e in tls_env.audit(actor="alice") if e["action"] == "experiments.create"]
    assert [e["summary"]["name"] for e in created] == [name], created
    assert client.get_experiment(by_alice).name == name
    # An editor, not an admin: what her role does not allow stays refused.
    r = requests.get(f"{url}/api/slipway/v1/users", verify=str(tls_env.pki.ca), cert=str(alice),
                     timeout=10)
    assert r.status_code == 403, r.text
    # Without a certificate or a password she is nobody.
    r = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name",
                     params={"experiment_name": name}, verify=str(tls_env.pki.ca), timeout=10)
    assert r.status_code == 401, r.text
    # A certificate from another CA, naming the admin, does not get through the handshake.
    stranger = Pki(tmp_path / "stranger", label="stranger")
    _, _, forged = stranger.issue("root")
    with pytest.raises(requests.RequestException):
        requests.get(f"{url}/api/slipway/v1/users", verify=str(tls_env.pki.ca), cert=str(forged),
                     timeout=10)


def test_the_cli_verifies_the_server_with_its_ca(tls_env):
    # The system's roots do not know the test CA: the CLI says it could not verify.
    refused = tls_env.cli("deploy", "list", env=tls_env.as_root(), check=False)
    assert refused.returncode != 0
    assert "certificate" in (refused.stderr + refused.stdout).lower(), refused.stderr
    listed = tls_env.cli("deploy", "list", "--ca-cert", str(tls_env.pki.ca), env=tls_env.as_root())
    assert listed.returncode == 0
    # The mlflow client's variable serves the CLI too; a client certificate stands for a
    # password there as well.
    _, _, alice = tls_env.pki.issue("alice")
    listed = tls_env.cli("deploy", "list", env={
        "MLFLOW_TRACKING_SERVER_CERT_PATH": str(tls_env.pki.ca),
        "MLFLOW_TRACKING_CLIENT_CERT_PATH": str(alice)})
    assert listed.returncode == 0
    broken = tls_env.cli("deploy", "list", "--ca-cert", "/nonexistent/ca.pem", check=False)
    assert broken.returncode != 0 and "/nonexistent/ca.pem" in broken.stderr, broken.stderr


def test_a_replica_serves_https_and_reports_as_its_certificate(tls_env, monkeypatch, tmp_path):
    _require_runtime()
    url, ca = tls_env.server.url, str(tls_env.pki.ca)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", ca)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "root")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ROOT_PASSWORD)
    client = MlflowClient(url, url)
    model = unique_name("tls-model")
    register_folder(client, model, MLFLOW_MODEL, versions=2)
    client.set_registered_model_alias(model, "production", "1")
    name = unique_name("tls-d")
    root = {**tls_env.as_root(), "MLFLOW_TRACKING_SERVER_CERT_PATH": ca}
    tls_env.cli("deploy", "create", name, "--model", f"models:/{model}@production", env=root)

    # The replica has no password or token: only its certificate, and its own HTTPS listener.
    _, _, identity = tls_env.pki.issue("replica-1")
    port = free_port()
    log_path = tmp_path / "replica.log"
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    replica = subprocess.Popen(
        [tls_env.bin, "serve", "--deployment", name, "--tracking-uri", url, "--port", str(port),
         "--ca-cert", ca, "--client-cert", str(identity),
         "--tls-cert", str(tls_env.server_cert), "--tls-key", str(tls_env.server_key)],
        env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{port}"
    session = requests.Session()
    session.trust_env = False
    session.verify = ca
    try:
        deadline = time.monotonic() + 30
        while True:
            assert replica.poll() is None, log_path.read_text()
            try:
                if session.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        r = session.post(f"{base}/invocations", json=EXAMPLE, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"]["label"] == [1, 0]

        tls_env.cli("deploy", "update", name, "--candidate", f"models:/{model}/2",
                    "--interval", "500ms", "--min-samples", "30", "--max-p99-ratio", "10",
                    # The candidate is the stable's own model; with 8 sample rows dealt to the
                    # variants at random, their prediction mixes can differ by chance, and
                    # this test is about who reports, not about shifts.
                    "--max-shift", "off", "--steps", "50:1s,100:1s", env=root)
        stop = threading.Event()
        statuses: list[int] = []

        def send():
            i = 0
            while not stop.is_set():
                answer = session.post(f"{base}/invocations", json={"inputs": [ROWS[i % len(ROWS)]]},
                                      timeout=10)
                statuses.append(answer.status_code)
                i += 1
                time.sleep(0.002)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            deadline = time.monotonic() + 60
            while True:
                deployment = tls_env.root.get(f"{url}/api/slipway/v1/deployments/{name}",
                                              timeout=10).json()["deployment"]
                state = deployment["rollout"]["state"]["state"]
                if state in {"succeeded", "rolled_back", "aborted"}:
                    break
                assert time.monotonic() < deadline, deployment["rollout"]
                time.sleep(0.2)
        finally:
            stop.set()
            sender.join(timeout=15)
        assert state == "succeeded", (deployment["rollout"]["state"], log_path.read_text()[-3000:])
        assert set(statuses) == {200}, statuses[-5:]
        # The analyses summed the replica's reports under the name its certificate gave it.
        events = tls_env.root.get(f"{url}/api/slipway/v1/deployments/{name}/events",
                                  timeout=10).json()["events"]
        sources = [e["detail"].get("sources", {}) for e in events if e["kind"] == "analysis"]
        assert any(s.get("replica:replica-1", 0) > 0 for s in sources), sources
    finally:
        replica.terminate()
        replica.wait(timeout=15)


def test_serve_with_a_client_ca_takes_only_clients_with_a_certificate(tls_env, tmp_path):
    _require_runtime()
    port = free_port()
    log_path = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [tls_env.bin, "serve", "-m", str(MLFLOW_MODEL), "--port", str(port),
         "--tls-cert", str(tls_env.server_cert), "--tls-key", str(tls_env.server_key),
         "--client-ca", str(tls_env.pki.ca)],
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{port}"
    _, _, client_cert = tls_env.pki.issue("scorer")
    ca = str(tls_env.pki.ca)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert serve.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{base}/ping", verify=ca, cert=str(client_cert),
                                timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        r = requests.post(f"{base}/invocations", json=EXAMPLE, verify=ca, cert=str(client_cert),
                          timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"]["label"] == [1, 0]
        with pytest.raises(requests.RequestException):
            requests.post(f"{base}/invocations", json=EXAMPLE, verify=ca, timeout=10)
    finally:
        serve.terminate()
        serve.wait(timeout=15)


def test_credentials_never_cross_a_public_address_in_clear(slipway_bin, tmp_path):
    def start(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [slipway_bin, "server", "--host", "0.0.0.0", "--port", str(free_port()),
             "--backend-store-uri", f"sqlite:///{tmp_path / 'refused.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts"), *extra],
            capture_output=True, text=True, timeout=30)

    refused = start("--auth")
    assert refused.returncode != 0
    assert "--tls-cert" in refused.stderr and "--insecure-no-tls" in refused.stderr, refused.stderr
    # Nothing was made: the refusal comes before the store is opened.
    assert not (tmp_path / "refused.db").exists()
    refused = start("--auth", "--tls-cert", str(tmp_path / "missing.crt"))
    assert refused.returncode != 0 and "--tls-key" in refused.stderr, refused.stderr
