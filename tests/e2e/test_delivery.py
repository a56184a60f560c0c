"""The delivery report end to end, from real events only: a model whose versions are logged by
runs of the real mlflow client, a deployment created on it, a canary that promotes a good
candidate, a canary whose candidate errors and is rolled back, an alert rule that fires to a
webhook while the promoted version serves and resolves when the traffic stops, and the traffic's
CPU time priced by the server's `--cpu-hour-price`. `slipway report delivery --json` must then
count exactly those deploys and changes, measure every lead time from the source run's start as
the mlflow client reads it, and cost the traffic as the price says; only the clock (the report's
period) is chosen by the test.

Runs on SQLite, and on a fresh PostgreSQL database in the PostgreSQL pass."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
import requests

from e2e_support import SlipwayServer, now_ms, unique_name
from test_deployments import (MLFLOW_MODEL, MODELS, Env, Traffic, Webhook, _require_runtime,
                              _start_rollout)
from test_slo import Receiver

pytestmark = pytest.mark.slipway_only

PRICE = 0.05
DAY_MS = 86_400_000


def _rfc3339(ms: int) -> str:
    at = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _durations(values: list[int]) -> dict:
    """What the report says of these durations (integer milliseconds, as the server sums)."""
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) // 2
    return {"count": n, "median_ms": median, "mean_ms": sum(ordered) // n,
            "max_ms": ordered[-1]}


@pytest.fixture
def server(slipway_bin, tmp_path, fresh_postgres_optional):
    _require_runtime()
    webhook = Webhook()
    backend = fresh_postgres_optional() if fresh_postgres_optional else None
    srv = SlipwayServer(slipway_bin, tmp_path / "server", backend_store_uri=backend,
                        extra_args=["--cpu-hour-price", str(PRICE), "--alert-interval", "1s",
                                    "--webhook-url", webhook.url])
    try:
        srv.start()
    except RuntimeError as e:
        webhook.close()
        pytest.fail(str(e), pytrace=False)
    yield srv, webhook
    srv.stop(timeout=10)
    webhook.close()


def test_the_delivery_report_counts_what_happened(server, slipway_bin, tmp_path):
    srv, webhook = server
    env = Env(srv, slipway_bin, tmp_path, webhook)
    started = now_ms()

    def report(*args: str) -> dict:
        return json.loads(env.cli("report", "delivery", "--json", *args).stdout)

    # Nothing happened yet: no deploy, no change, nothing to price.
    empty = report()
    assert empty["cpu_hour_price"] == PRICE, empty
    assert empty["models"] == {} and empty["changes"] == [] and empty["incidents"] == []
    assert empty["overall"]["deploys"] == 0 and empty["overall"]["change_failure_rate"] is None
    assert empty["overall"]["cost_per_1000"] is None, empty

    # Version 1, logged by a run of its own, deployed through `@production`.
    stable = env.register(MLFLOW_MODEL)
    env.client.set_registered_model_alias(env.model, "production", stable)
    name = unique_name("dl")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}@production")
    url = f"{srv.url}/deployments/{name}/invocations"
    sent = 0

    def traffic_until(states: set[str]) -> dict:
        nonlocal sent
        with Traffic(url) as traffic:
            deployment = env.wait_state(name, states, timeout=60)
        sent += len([a for a in traffic.answers if a[0] != 0])
        assert traffic.statuses() == {200}, [a for a in traffic.answers if a[0] != 200][:3]
        return deployment

    # A good candidate (the same model, logged by another run) is promoted on live traffic.
    good = env.register(MLFLOW_MODEL)
    _start_rollout(env, name, good, "--steps", "50:1s,100:1s", "--max-shift", "off")
    promoted = traffic_until({"succeeded", "rolled_back"})
    assert promoted["rollout"]["state"]["state"] == "succeeded", promoted["rollout"]
    assert env.alias("production") == good

    # A candidate that cannot read these rows (4 features) fails every request it gets; the
    # stable answers them all and the analysis rolls it back.
    bad = env.register(MODELS, files=["iris_logreg.onnx"])
    env.cli("deploy", "update", name, "--breaker-failures", "1000")
    _start_rollout(env, name, bad, "--steps", "50:30s")
    rolled = traffic_until({"rolled_back", "succeeded"})
    assert rolled["rollout"]["state"]["state"] == "rolled_back", rolled["rollout"]
    assert env.alias("production") == good

    # On-call hears of the busy deployment while the promoted version serves, and of the end
    # of it once the traffic stops.
    receiver = Receiver()
    try:
        rules = tmp_path / "alerts.yml"
        rules.write_text(f"""
receivers:
  - name: oncall
    webhook: {{url: "{receiver.url}"}}
rules:
  - alert: DeliveryBusy
    deployment: {name}
    expr: requests >= 5
    window: 10s
""")
        env.cli("alerts", "rules", "apply", str(rules))
        session = requests.Session()
        deadline = time.monotonic() + 30
        while not [b for b in receiver.bodies if b.get("status") == "firing"]:
            for row in json.loads((MODELS / "logreg_breast_cancer.samples.json").read_text())[
                    "inputs"]:
                assert session.post(url, json={"inputs": [row]}, timeout=10).status_code == 200
                sent += 1
            assert time.monotonic() < deadline, env.cli("alerts", "list", check=False).stdout
            time.sleep(0.2)
        deadline = time.monotonic() + 40
        while not [b for b in receiver.bodies if b.get("status") == "resolved"]:
            assert time.monotonic() < deadline, env.cli("alerts", "list", check=False).stdout
            time.sleep(0.2)
    finally:
        receiver.close()
    alerts = json.loads(env.cli("alerts", "list", "--json").stdout)
    assert not alerts["alerts"], alerts
    alert = [a for a in alerts["resolved"] if a["labels"]["alertname"] == "DeliveryBusy"]
    assert len(alert) == 1, alerts
    alert = alert[0]

    # The report counts every request once the leader has stored the last serving minutes.
    deadline = time.monotonic() + 20
    while (answer := report())["overall"]["requests"] < sent:
        assert time.monotonic() < deadline, (answer["overall"], sent)
        time.sleep(0.5)
    after = now_ms()

    events = env.events(name)
    created = [e for e in events if e["kind"] == "created"]
    promotions = [e for e in events if e["kind"] == "promoted"]
    rollbacks = [e for e in events if e["kind"] == "rolled_back"]
    assert (len(created), len(promotions), len(rollbacks)) == (1, 1, 1), events
    assert not [e for e in events if e["kind"] == "followed_alias"], events
    bad_rollout = rollbacks[0]["rollout_id"]
    assert bad_rollout is not None and bad_rollout != promotions[0]["rollout_id"], events
    bad_started = [e for e in events
                   if e["kind"] == "rollout_started" and e["rollout_id"] == bad_rollout]
    assert len(bad_started) == 1, events

    # Lead time: from the start of the run that logged the version, as the mlflow client reads
    # it, to the moment the version took the stable traffic.
    def run_start(version: str) -> int:
        run_id = env.client.get_model_version(env.model, version).run_id
        assert run_id, version
        return env.client.get_run(run_id).info.start_time

    lead = {stable: created[0]["time_ms"] - run_start(stable),
            good: promotions[0]["time_ms"] - run_start(good)}
    assert all(v > 0 for v in lead.values()), lead

    changes = answer["changes"]
    assert [(c["kind"], c["version"], c["deployment"], c["model"]) for c in changes] == [
        ("created", stable, name, env.model),
        ("promoted", good, name, env.model),
        ("rolled_back", bad, name, env.model),
    ], changes
    assert [c["time_ms"] for c in changes] == [
        created[0]["time_ms"], promotions[0]["time_ms"], rollbacks[0]["time_ms"]], changes
    assert [c["rollout_id"] for c in changes] == [
        None, promotions[0]["rollout_id"], bad_rollout], changes
    assert [c["lead_time_ms"] for c in changes] == [lead[stable], lead[good], None], changes
    # Failed: the promoted version (the alert began while it served) and the rolled-back one.
    assert changes[0]["failed"] is None, changes
    assert changes[1]["failed"] == "alert DeliveryBusy fired", changes
    assert changes[2]["failed"].startswith(f"rollout {bad_rollout} rolled back: "), changes
    assert "error_rate" in changes[2]["failed"], changes

    incidents = answer["incidents"]
    assert incidents == [
        {"deployment": name, "model": env.model, "cause": f"rollout {bad_rollout} rolled back",
         "start_ms": bad_started[0]["time_ms"], "end_ms": rollbacks[0]["time_ms"]},
        {"deployment": name, "model": env.model, "cause": "alert DeliveryBusy",
         "start_ms": alert["active_since_ms"], "end_ms": alert["resolved_ms"]},
    ], incidents
    assert started <= alert["active_since_ms"] and alert["resolved_ms"] <= after, alert
    # The alert began after the promotion, so it is the promoted version's.
    assert alert["active_since_ms"] >= promotions[0]["time_ms"], (alert, promotions)

    overall = answer["overall"]
    days = (answer["until_ms"] - answer["since_ms"]) / DAY_MS
    # `--since 30d` by default, until the server's now.
    assert abs(answer["until_ms"] - answer["since_ms"] - 30 * DAY_MS) < 60_000, answer
    assert overall["deploys"] == 2, overall
    assert overall["deploys_per_day"] == pytest.approx(2 / days), overall
    assert (overall["changes"], overall["failed_changes"]) == (3, 2), overall
    assert overall["change_failure_rate"] == pytest.approx(2 / 3), overall
    assert overall["lead_time"] == _durations(list(lead.values())), overall
    assert overall["time_to_restore"] == _durations(
        [i["end_ms"] - i["start_ms"] for i in incidents]), overall
    assert overall["open_incidents"] == 0, overall
    # Every request the deployment answered, and the CPU time its model runs took, priced.
    assert overall["requests"] == sent, (overall, sent)
    assert overall["cpu_seconds"] > 0, overall
    assert overall["cpu_ms_per_1000"] == pytest.approx(
        overall["cpu_seconds"] * 1e6 / overall["requests"], rel=1e-9), overall
    assert overall["cost_per_1000"] == pytest.approx(
        overall["cpu_ms_per_1000"] / 3.6e6 * PRICE, rel=1e-9), overall
    assert overall["cost_per_1000"] > 0, overall
    # One model on this server: its entry is the whole.
    assert answer["models"] == {env.model: overall}, answer["models"]

    # The table a person reads.
    text = env.cli("report", "delivery").stdout
    assert env.model in text and "(all)" in text, text
    assert f"CPU hour at {PRICE}" in text, text
    assert "67% (2/3)" in text, text
    assert f"{name} version {good}: alert DeliveryBusy fired" in text, text
    assert f"{name} version {bad}: rollout {bad_rollout} rolled back" in text, text

    # The period bounds what is counted: after everything, or before anything, nothing is.
    # Serving is stored per minute and a period counts the minutes that start in it, so the
    # period before ends with the minute before the first request's.
    before = started - started % 60_000 - 1
    for since, until in [(after + 1, after + 60_000), (before - 60_000, before)]:
        bounded = report("--since", _rfc3339(since), "--until", _rfc3339(until))
        assert (bounded["since_ms"], bounded["until_ms"]) == (since, until), bounded
        nothing = bounded["overall"]
        assert bounded["changes"] == [] and bounded["incidents"] == [], bounded
        assert bounded["models"] == {}, bounded
        assert (nothing["deploys"], nothing["changes"], nothing["requests"]) == (0, 0, 0), nothing
        assert nothing["lead_time"] is None and nothing["change_failure_rate"] is None, nothing
        assert nothing["cpu_ms_per_1000"] is None and nothing["cost_per_1000"] is None, nothing
    # A period around the rolled-back rollout alone: one failed change, no deploy.
    around = report("--since", _rfc3339(bad_started[0]["time_ms"]),
                    "--until", _rfc3339(rollbacks[0]["time_ms"]))
    assert [c["kind"] for c in around["changes"]] == ["rolled_back"], around["changes"]
    assert around["overall"]["deploys"] == 0 and around["overall"]["lead_time"] is None
    assert around["overall"]["change_failure_rate"] == 1.0, around["overall"]
    assert around["overall"]["time_to_restore"]["count"] == 1, around["overall"]
