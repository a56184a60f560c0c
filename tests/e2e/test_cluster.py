"""Two slipway servers on one PostgreSQL database and one artifact folder, as a platform team runs
them behind a load balancer. Clients spread their requests over both (round robin, the other one
on a connection error). One server leads: it runs the rollout controller, and the other queues
its data plane's measurements in the store for it. The leader is SIGKILLed mid-rollout: the
survivor must take the lease over within seconds and finish the rollout, and no decision (a
stage change, the promotion) may be taken twice: one event, one audit entry and one webhook
each."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import SlipwayServer, unique_name
from test_chaos import RoundRobin
from test_deployments import MLFLOW_MODEL, Webhook, _analyses, _require_runtime

pytestmark = pytest.mark.slipway_only

LEASE = "2s"
DECISION_TIMEOUT = 120


def _cluster(server: SlipwayServer) -> dict:
    r = requests.get(f"{server.url}/api/slipway/v1/cluster", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _get(server: SlipwayServer, path: str, **params) -> dict:
    r = requests.get(f"{server.url}/api/slipway/v1{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _wait(condition, what: str, timeout: float = DECISION_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_leader_killed_mid_rollout_is_replaced_and_no_decision_is_taken_twice(
        slipway_bin, tmp_path, fresh_postgres):
    _require_runtime()
    postgres_database = fresh_postgres()
    webhook = Webhook()
    artifacts = tmp_path / "artifacts"
    servers = []
    for node in ("a", "b"):
        server = SlipwayServer(
            slipway_bin, tmp_path / node, backend_store_uri=postgres_database,
            artifacts_destination=str(artifacts),
            extra_args=["--node-name", node, "--leader-lease", LEASE,
                        "--webhook-url", webhook.url])
        servers.append(server)
    try:
        servers[0].start()
        servers[1].start()
        a, b = servers
        # The first one up leads; the other knows who does.
        assert _cluster(a)["leader"] is True
        seen_by_b = _cluster(b)
        assert seen_by_b["leader"] is False
        assert seen_by_b["lease"]["holder"] == "a"

        # A model with an alias, registered through either server: one store.
        client = MlflowClient(a.url, a.url)
        model = unique_name("ha")
        client.create_registered_model(model)
        experiment = client.get_experiment_by_name("Default").experiment_id
        versions = []
        for server in (a, b):
            writer = MlflowClient(server.url, server.url)
            run = writer.create_run(experiment)
            writer.log_artifacts(run.info.run_id, str(MLFLOW_MODEL), "model")
            versions.append(writer.create_model_version(
                model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version)
        assert versions == ["1", "2"]
        client.set_registered_model_alias(model, "production", "1")

        name = unique_name("d")
        cli_env = dict(os.environ, MLFLOW_TRACKING_URI=b.url)

        def cli(*args):
            result = subprocess.run([slipway_bin, *args], env=cli_env, capture_output=True,
                                    text=True, timeout=60)
            assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
            return result

        cli("deploy", "create", name, "--model", f"models:/{model}@production")
        # Three stages long enough for the kill to land in the middle of the rollout.
        # The candidate is the same model: latency noise and the chance mix of eight sample
        # rows per variant must not decide a test about leadership.
        cli("deploy", "update", name, "--candidate", f"models:/{model}/2",
            "--interval", "500ms", "--min-samples", "30", "--steps", "25:3s,50:6s,100:1s",
            "--max-p99-ratio", "10", "--max-shift", "off")
        rollout_id = _get(b, f"/deployments/{name}")["deployment"]["rollout"]["id"]

        # RoundRobin posts to `{url}/invocations`.
        with RoundRobin([f"{s.url}/deployments/{name}" for s in servers]) as clients:
            # The leader analyses both servers' traffic: b's plane queues its reports.
            _wait(lambda: _cluster(b)["reports_queued"] > 0 and _cluster(a)["reports_taken"] > 0,
                  "the follower's reports to reach the leader")
            _wait(lambda: _get(a, f"/deployments/{name}")["deployment"]["rollout"]["stage"] >= 1,
                  "the first stage to pass")
            before = _get(a, f"/deployments/{name}")["deployment"]["rollout"]
            assert before["state"]["state"] == "progressing", before
            assert before["stage"] == 1, "too slow: the kill missed the middle of the rollout"
            a.kill()
            killed = time.monotonic()

            # The survivor takes the lease over once it lapses (2 s), in a new epoch.
            took_over = _wait(lambda: _cluster(b)["leader"], "the survivor to lead", timeout=30)
            took = time.monotonic() - killed
            print(f"leadership moved {took:.2f}s after the leader was killed")
            status = _cluster(b)
            assert status["lease"]["holder"] == "b"
            assert status["lease"]["epoch"] == 2
            assert took < 10, f"leadership took {took:.1f}s to move"
            assert took_over

            def finished():
                rollout = _get(b, f"/deployments/{name}")["deployment"]["rollout"]
                return rollout if rollout["state"]["state"] != "progressing" else None

            final = _wait(finished, "the rollout to finish")
            assert final["state"]["state"] == "succeeded", final
            assert final["id"] == rollout_id

        assert not clients.failed, clients.failed[:5]
        assert {status for _, status, _, _ in clients.answers} == {200}
        survivor = MlflowClient(b.url, b.url)
        assert survivor.get_model_version_by_alias(model, "production").version == "2"

        # No decision twice: each stage entered once, one promotion, in the events...
        events = _get(b, f"/deployments/{name}/events", limit=1000)["events"]
        ours = [e for e in events if e.get("rollout_id") == rollout_id]
        stages = Counter(e["detail"]["stage"] for e in ours if e["kind"] == "stage")
        assert stages == Counter({1: 1, 2: 1}), json.dumps(ours)[-3000:]
        assert [e["kind"] for e in ours].count("promoted") == 1, json.dumps(ours)[-3000:]
        assert not [e for e in ours if e["kind"] == "rolled_back"]
        # ...the analyses after the kill were made by the survivor on its own traffic...
        assert any(x["verdict"]["verdict"] == "pass" for x in _analyses(ours))
        # ...the audit log, whose chain holds across both servers' writes...
        audit = _get(b, "/audit", resource=f"deployment:{name}")["entries"]
        actions = Counter(e["action"] for e in audit)
        assert actions["deployments.stage"] == 2, actions
        assert actions["deployments.promote"] == 1, actions
        assert _get(b, "/audit/verify")["intact"] is True
        # ...and the webhook.
        time.sleep(1)
        hooks = Counter(e["event"] for e in webhook.events)
        assert hooks["deployment.promoted"] == 1, hooks
        assert "panicked" not in b.stderr()
        assert "this server leads now" in b.stderr()
    finally:
        for server in servers:
            server.stop(timeout=10)
        webhook.close()
