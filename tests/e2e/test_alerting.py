"""Alerts that reach on-call, end to end: a rules file applied with `slipway alerts rules
apply`, a deployment whose traffic drifts and comes back, and every receiver kind hearing the
alert fire and resolve:

* a real Prometheus **Alertmanager** (Debian's ``prometheus-alertmanager``, started here), which
  routes it on to a webhook of this test, as a team's Alertmanager routes to PagerDuty or Slack:
  the runbook URL arrives there, and later the resolution;
* slipway's own HMAC-signed webhook (its secret given by reference, ``file:`` under the server's
  ``--secrets-dir``), Slack's
  incoming-webhook format and PagerDuty's Events API v2 (trigger, then resolve with the same
  dedup key), all pointed at this test's HTTP receiver.

Firing and resolving are listed by `slipway alerts list`, audited, and exported on /metrics.
Without the ``prometheus-alertmanager`` binary the test is skipped with the reason, except under
``CI=true``, where it fails (scripts/test.sh installs it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from e2e_support import free_port, unique_name
from test_monitoring import Env, _send
from test_deployments import _require_runtime

pytestmark = pytest.mark.slipway_only

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Receiver:
    """An HTTP server that keeps every POST it gets, by path."""

    def __init__(self):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = 202 if self.path.startswith("/pagerduty") else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "success"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[tuple[dict, dict]]:
        with self.lock:
            return [(headers, json.loads(body)) for p, headers, body in self.requests
                    if p == path]

    def raw(self, path: str) -> list[tuple[dict, bytes]]:
        with self.lock:
            return [(headers, body) for p, headers, body in self.requests if p == path]

    def wait(self, path: str, what: str, accept, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while True:
            found = [body for _, body in self.bodies(path) if accept(body)]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, \
                f"{path}: no {what} within {timeout}s; got {self.bodies(path)}"
            time.sleep(0.2)

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def alertmanager(tmp_path, receiver):
    if not ALERTMANAGER:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but prometheus-alertmanager is not installed "
                        "(scripts/test.sh installs Debian's package)")
        pytest.skip("needs Debian's prometheus-alertmanager (apt-get install prometheus-alertmanager)")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    # Its own routing sends everything on to this test's webhook at once, resolutions too.
    config.write_text(f"""
route:
  receiver: oncall
  group_by: [alertname, deployment]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: oncall
    webhook_configs:
      - url: {receiver.url}/alertmanager-webhook
        send_resolved: true
""")
    log = (tmp_path / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
        assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_a_drifting_deployment_pages_alertmanager_and_every_receiver_then_resolves(
        slipway_factory, slipway_bin, tmp_path, receiver, alertmanager):
    _require_runtime()
    secret = tmp_path / "webhook-secret"
    secret.write_text("s3cret-signing-key\n")
    server = slipway_factory(extra_args=["--alert-interval", "1s", "--secrets-dir", str(tmp_path)])
    env = Env(server, slipway_bin, tmp_path)
    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")
    name = unique_name("al")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}",
            "--monitor-window", "60s", "--monitor-window-rows", "200")

    rules = tmp_path / "alerts.yml"
    rules.write_text(f"""
receivers:
  - name: oncall
    alertmanager: {{url: "{alertmanager}"}}
  - name: audit-hook
    webhook: {{url: "{receiver.url}/signed", secret: "file:{secret}"}}
  - name: team-slack
    slack: {{url: "file:{tmp_path / 'slack-url'}"}}
  - name: pager
    pagerduty: {{routing_key: "file:{tmp_path / 'routing-key'}", url: "{receiver.url}/pagerduty"}}
rules:
  - alert: FeaturesDrifted
    deployment: {name}
    expr: drift_share >= 0.5
    severity: critical
    labels: {{team: risk}}
    summary: "{{{{ deployment }}}}: {{{{ value }}}} of the features drifted"
    runbook_url: https://runbooks.example.com/drift
  - alert: TooManyErrors
    expr: error_rate > 0.5
    window: 1m
    min_samples: 10
""")
    (tmp_path / "slack-url").write_text(f"{receiver.url}/slack")
    (tmp_path / "routing-key").write_text("R0UTING-KEY")

    # A mistake in the file is named, and nothing is stored.
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - alert: Drift\n    expr: drift_shar >= 0.5\n")
    refused = env.cli("alerts", "rules", "apply", str(bad), check=False)
    assert refused.returncode != 0 and "unknown signal 'drift_shar'" in refused.stderr, \
        refused.stderr
    # A receiver may not name any variable of the server's (its store's URL, say) as a secret.
    bad.write_text('receivers:\n  - name: leak\n    pagerduty: {routing_key: "env:DATABASE_URL"}\n')
    refused = env.cli("alerts", "rules", "apply", str(bad), check=False)
    assert refused.returncode != 0 and "SLIPWAY_SECRET_" in refused.stderr, refused.stderr
    plan = env.cli("alerts", "rules", "apply", str(rules), "--dry-run")
    assert "FeaturesDrifted@" in plan.stdout and "would change" in plan.stdout, plan.stdout
    applied = env.cli("alerts", "rules", "apply", str(rules))
    assert "as revision 1" in applied.stdout, applied.stdout
    shown = env.cli("alerts", "rules", "show").stdout
    assert "drift_share >= 0.5" in shown and "kind: pagerduty" in shown, shown
    # Secrets are references: neither the API nor the audit log ever holds their values.
    config = requests.get(f"{server.url}/api/slipway/v1/alerts/config", timeout=10).json()
    assert "R0UTING-KEY" not in json.dumps(config) and "file:" in json.dumps(config)

    url = f"{server.url}/deployments/{name}/invocations"
    rng = random.Random(3)
    _send(url, rng.choices(env.rows, k=200))
    calm = env.wait_window(name, 0)
    assert calm["report"]["report"]["features"]["dataset"]["dataset_drift"] is False
    time.sleep(2.5)
    assert env.cli("alerts", "list").returncode == 0
    assert receiver.requests == [], "nothing fires on traffic like the reference's"

    # Traffic shifts: the next window drifts, and the alert fires at the next evaluation.
    _send(url, rng.choices(env.rows, k=200), scale=1.5)
    drifted = env.wait_window(name, calm["id"])
    assert drifted["report"]["report"]["features"]["dataset"]["share"] >= 0.5

    forwarded = receiver.wait(
        "/alertmanager-webhook", "firing notification from Alertmanager",
        lambda body: body["status"] == "firing")
    alert = forwarded["alerts"][0]
    assert alert["labels"]["alertname"] == "FeaturesDrifted"
    assert alert["labels"]["deployment"] == name and alert["labels"]["team"] == "risk"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"] == "https://runbooks.example.com/drift"
    assert alert["annotations"]["summary"].startswith(f"{name}: "), alert["annotations"]
    assert alert["generatorURL"].startswith(server.url), alert

    listed = env.cli("alerts", "list", check=False)
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert "FIRING" in listed.stdout and "runbooks.example.com/drift" in listed.stdout
    as_json = json.loads(env.cli("alerts", "list", "--json", check=False).stdout)
    firing = [a for a in as_json["alerts"] if a["state"] == "firing"]
    assert len(firing) == 1 and firing[0]["value"] >= 0.5, as_json

    signed = receiver.wait("/signed", "signed webhook", lambda b: b["status"] == "firing")
    headers, body = receiver.raw("/signed")[0]
    timestamp = headers["x-slipway-timestamp"]
    expected = hmac.new(b"s3cret-signing-key", f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert headers["x-slipway-signature"] == f"sha256={expected}"
    assert signed["alerts"][0]["annotations"]["runbook_url"] == "https://runbooks.example.com/drift"
    slack = receiver.wait("/slack", "Slack message", lambda b: "FIRING" in b["text"])
    assert "FeaturesDrifted" in slack["text"] and "runbooks.example.com" in json.dumps(slack)
    trigger = receiver.wait("/pagerduty", "PagerDuty trigger",
                            lambda b: b["event_action"] == "trigger")
    assert trigger["routing_key"] == "R0UTING-KEY"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["links"][0]["href"] == "https://runbooks.example.com/drift"

    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert (f'slipway_alerts_active{{alertname="FeaturesDrifted",deployment="{name}",'
            f'severity="critical",state="firing"}} 1') in metrics, metrics[-2000:]

    # Traffic comes back: the next window is calm, the alert resolves everywhere.
    _send(url, rng.choices(env.rows, k=200))
    env.wait_window(name, drifted["id"])
    resolved = receiver.wait(
        "/alertmanager-webhook", "resolution from Alertmanager",
        lambda body: body["status"] == "resolved")
    assert resolved["alerts"][0]["labels"]["alertname"] == "FeaturesDrifted"
    resolve = receiver.wait("/pagerduty", "PagerDuty resolve",
                            lambda b: b["event_action"] == "resolve")
    assert resolve["dedup_key"] == trigger["dedup_key"]
    receiver.wait("/signed", "signed resolution", lambda b: b["status"] == "resolved")
    receiver.wait("/slack", "Slack resolution", lambda b: "RESOLVED" in b["text"])
    # One firing, one resolution: the alert was deduplicated while it fired.
    assert len([b for _, b in receiver.bodies("/pagerduty")]) == 2

    after = json.loads(env.cli("alerts", "list", "--json").stdout)
    assert as_json["alerts"] and not [a for a in after["alerts"] if a["state"] == "firing"]
    assert after["resolved"][0]["labels"]["alertname"] == "FeaturesDrifted"
    assert after["resolved"][0]["resolved_ms"] > after["resolved"][0]["fired_ms"]
    audit = requests.get(f"{server.url}/api/slipway/v1/audit",
                         params={"resource": f"deployment:{name}"}, timeout=10).json()
    actions = [e["action"] for e in audit["entries"]]
    assert "alerts.firing" in actions and "alerts.resolved" in actions, actions
    rules_audit = requests.get(f"{server.url}/api/slipway/v1/audit",
                               params={"resource": "alerting:config"}, timeout=10).json()
    assert [e["action"] for e in rules_audit["entries"]] == ["alerts.rules.apply"]
    assert "R0UTING-KEY" not in json.dumps(rules_audit)
    # Nor does anything on disk: the database (its WAL too), the server's logs, an audit export.
    export = tmp_path / "audit.jsonl"
    env.cli("audit", "export", "--output", str(export), "--backend-store-uri",
            server.backend_store_uri)
    written = [export, *server.workdir.glob("slipway.db*"), *server.workdir.glob("slipway-std*.log")]
    assert any(p.name.startswith("slipway.db") for p in written), written
    for path in written:
        content = path.read_bytes()
        for value in (b"s3cret-signing-key", b"R0UTING-KEY"):
            assert value not in content, f"{value!r} written to {path}"


def test_silenced_alerts_are_recorded_but_nobody_is_told(
        slipway_factory, slipway_bin, tmp_path, receiver):
    _require_runtime()
    server = slipway_factory(extra_args=["--alert-interval", "1s"])
    env = Env(server, slipway_bin, tmp_path)
    name = unique_name("si")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}")
    rules = tmp_path / "alerts.yml"
    rules.write_text(f"""
receivers:
  - name: hook
    webhook: {{url: "{receiver.url}/hook"}}
rules:
  - alert: BusyDeployment
    deployment: {name}
    expr: requests >= 5
    window: 10s
""")
    env.cli("alerts", "rules", "apply", str(rules))
    silence = env.cli("alerts", "silence", "create", "--match", "alertname=BusyDeployment",
                      "--match", f"deployment={name}", "--duration", "1h",
                      "--comment", "load test under way, ask Ana")
    assert "holds back alerts matching alertname=BusyDeployment" in silence.stdout, \
        silence.stdout
    silence_id = silence.stdout.split()[1]
    # Serving signals wait until the server has watched the deployment for a whole window.
    time.sleep(10.5)
    _send(f"{server.url}/deployments/{name}/invocations", env.rows[:10])
    deadline = time.monotonic() + 20
    while True:
        listed = json.loads(env.cli("alerts", "list", "--json", check=False).stdout)
        firing = [a for a in listed["alerts"] if a["state"] == "firing"]
        if firing:
            break
        assert time.monotonic() < deadline, f"no firing alert: {listed}"
        time.sleep(0.5)
    assert firing[0]["value"] == 10, firing
    time.sleep(2)
    assert receiver.requests == [], "a silenced alert notifies nobody"
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'slipway_alerts_notifications_total{outcome="silenced"}' in metrics
    # Expired, the silence stops holding the firing alert back.
    env.cli("alerts", "silence", "expire", silence_id)
    receiver.wait("/hook", "notification after the silence ended",
                  lambda b: b["status"] == "firing", timeout=20)
    listed = env.cli("alerts", "silence", "list", "--all").stdout
    assert "ask Ana" in listed, listed
