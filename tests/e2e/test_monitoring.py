"""Drift monitoring of deployments end to end: a version's reference built with
`slipway monitor reference create` from scikit-learn's breast-cancer data (the model runs on it
locally), live traffic to the server and to a `slipway serve --deployment` replica, windows
closed and judged on the server, and the verdicts read where an operator looks:
`slipway monitor status`, the native API and `/metrics`."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import time
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import unique_name
from test_chaos import Replica
from test_deployments import MLFLOW_MODEL, _require_runtime

pytestmark = pytest.mark.slipway_only

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _dataset():
    data = sklearn_datasets.load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    return names, data.data.tolist(), data.target.tolist()


class Env:
    def __init__(self, server, slipway_bin, tmp_path):
        self.server = server
        self.bin = slipway_bin
        self.tmp = tmp_path
        self.client = MlflowClient(server.url, server.url)
        self.model = unique_name("mon")
        self.client.create_registered_model(self.model)
        experiment = self.client.get_experiment_by_name("Default").experiment_id
        run = self.client.create_run(experiment)
        self.client.log_artifacts(run.info.run_id, str(MLFLOW_MODEL), "model")
        self.version = self.client.create_model_version(
            self.model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
        self.names, self.rows, self.labels = _dataset()
        self.reference = tmp_path / "reference.csv"
        with self.reference.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*self.names, "target"])
            for row, label in zip(self.rows, self.labels):
                writer.writerow([*row, label])

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        import os
        env = dict(os.environ, MLFLOW_TRACKING_URI=self.server.url)
        result = subprocess.run([self.bin, *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if check:
            assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
        return result

    def status(self, name: str) -> dict:
        r = requests.get(f"{self.server.url}/api/slipway/v1/deployments/{name}/monitoring",
                         timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_window(self, name: str, after_id: int, timeout: float = 40) -> dict:
        """The first window closed after `after_id` that has rows."""
        deadline = time.monotonic() + timeout
        while True:
            windows = [w for w in self.status(name)["windows"] if w["id"] > after_id]
            if windows:
                return windows[-1]
            assert time.monotonic() < deadline, f"no window closed: {self.status(name)}"
            time.sleep(0.25)


def _send(url: str, rows: list[list[float]], scale: float = 1.0) -> None:
    session = requests.Session()
    for row in rows:
        r = session.post(url, json={"inputs": [[v * scale for v in row]]}, timeout=10)
        assert r.status_code == 200, r.text


@pytest.fixture
def env(slipway_factory, slipway_bin, tmp_path):
    _require_runtime()
    server = slipway_factory()
    return Env(server, slipway_bin, tmp_path)


def test_a_drifting_deployment_is_seen_in_its_windows_status_and_metrics(env):
    created = env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
                      "--data", str(env.reference), "--label", "target")
    assert "569 rows" in created.stdout, created.stdout
    assert "30 numerical" in created.stdout and "prediction: categorical" in created.stdout, \
        created.stdout
    # The model's accuracy on the data it was trained on, measured by the CLI.
    assert "accuracy 0.9" in created.stdout, created.stdout
    shown = json.loads(env.cli("monitor", "reference", "show",
                               f"models:/{env.model}/{env.version}", "--json").stdout)
    assert shown["reference"]["rows"] == 569
    assert [f["name"] for f in shown["reference"]["schema"]["features"]] == env.names
    assert shown["reference"]["performance"]["accuracy"] > 0.9

    name = unique_name("m")
    # Windows of 300 rows: each phase of traffic below is one window.
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}",
            "--monitor-window", "60s", "--monitor-window-rows", "300")
    url = f"{env.server.url}/deployments/{name}/invocations"
    rng = random.Random(7)

    # No window before traffic; then rows like the reference's.
    status = env.cli("monitor", "status", name)
    assert "no window has closed yet" in status.stdout, status.stdout
    _send(url, rng.choices(env.rows, k=300))
    calm = env.wait_window(name, 0)
    report = calm["report"]["report"]
    assert calm["rows"] == 300, calm
    assert report["features"]["dataset"]["dataset_drift"] is False, report["features"]["dataset"]
    assert report["prediction"]["drift_detected"] is False, report["prediction"]
    assert calm["report"]["sources"] == {"server": 300}

    # The same rows half as large again: every feature moves.
    _send(url, rng.choices(env.rows, k=300), scale=1.5)
    shifted = env.wait_window(name, calm["id"])
    dataset = shifted["report"]["report"]["features"]["dataset"]
    assert dataset["dataset_drift"] is True, dataset
    assert dataset["drifted_columns"] >= 20, dataset
    columns = shifted["report"]["report"]["features"]["columns"]
    assert all(c["method"] == "ks" for c in columns)
    assert max(c["data_quality"]["out_of_range_share_current"] for c in columns) > 0.1

    status = env.cli("monitor", "status", name, check=False)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "DRIFT" in status.stdout and "f0" in status.stdout, status.stdout
    as_json = json.loads(env.cli("monitor", "status", name, "--json", check=False).stdout)
    assert [w["id"] for w in as_json["windows"]][:2] == [shifted["id"], calm["id"]]

    metrics = requests.get(f"{env.server.url}/metrics", timeout=10).text
    assert f'slipway_monitor_dataset_drift{{deployment="{name}",version="{env.version}"}} 1' \
        in metrics, metrics[-3000:]
    assert f'slipway_monitor_feature_drift{{deployment="{name}",version="{env.version}",feature="f0"}}' \
        in metrics
    assert "slipway_monitor_windows_total 2" in metrics

    # Setting a reference is audited; the summaries are measurements, not audited.
    entries = requests.get(f"{env.server.url}/api/slipway/v1/audit",
                           params={"resource": f"registered_model:{env.model}"}, timeout=10).json()
    assert "monitoring.reference.set" in [e["action"] for e in entries["entries"]]


def test_a_replica_profiles_its_traffic_and_the_server_judges_it(env, tmp_path):
    # Without --label the label column would be a feature: said before anything is stored.
    wrong = env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
                    "--data", str(env.reference), check=False)
    assert wrong.returncode != 0 and "takes 30 features per row" in wrong.stderr \
        and "--label" in wrong.stderr, wrong.stderr
    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")
    name = unique_name("m")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}",
            "--monitor-window", "60s", "--monitor-window-rows", "200")
    replica = Replica(env, name, tmp_path / "replica.log")
    try:
        replica.wait_ready()
        rng = random.Random(11)
        _send(f"{replica.url}/invocations", rng.choices(env.rows, k=200), scale=0.5)
        window = env.wait_window(name, 0)
        sources = window["report"]["sources"]
        assert list(sources) == ["replica:anonymous"] and sources["replica:anonymous"] == 200, \
            window["report"]
        assert window["report"]["report"]["features"]["dataset"]["dataset_drift"] is True
    finally:
        replica.stop()


def test_summaries_that_do_not_fit_the_reference_are_refused(env):
    name = unique_name("m")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}")
    url = f"{env.server.url}/api/slipway/v1/deployments/{name}/monitoring/summaries"
    empty = {"start_ms": 0, "end_ms": 0, "rows": 0, "features": [], "prediction": None}
    # No reference yet.
    r = requests.post(url, json={"version": env.version, "summary": empty}, timeout=10)
    assert r.status_code == 400 and "no monitoring reference" in r.json()["message"], r.text
    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")
    # A version the deployment does not serve, and a summary of another shape.
    r = requests.post(url, json={"version": "99", "summary": empty}, timeout=10)
    assert r.status_code == 400 and "does not serve" in r.json()["message"], r.text
    r = requests.post(url, json={"version": env.version, "summary": empty}, timeout=10)
    assert r.status_code == 400 and "feature columns" in r.json()["message"], r.text


def test_late_labels_give_realized_performance_beside_the_estimate(env, tmp_path):
    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")
    name = unique_name("m")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}",
            "--log-sample", "1")
    url = f"{env.server.url}/deployments/{name}/invocations"
    rng = random.Random(5)
    picked = rng.sample(range(len(env.rows)), 150)
    session = requests.Session()
    answered = []
    for i in picked:
        r = session.post(url, json={"inputs": [env.rows[i]]}, timeout=10)
        assert r.status_code == 200, r.text
        answered.append((r.headers["x-request-id"], env.labels[i], r.json()["predictions"]))

    def performance():
        out = env.cli("monitor", "performance", name, "--window", "1h", "--windows", "2", "--json")
        return json.loads(out.stdout)

    # Before any label: every logged prediction estimated from its probabilities, nothing
    # realized yet.
    deadline = time.monotonic() + 10
    while True:
        now = performance()
        if now["windows"][0]["predictions"] == 150:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert now["windows"][0]["labeled"] == 0 and now["windows"][0]["realized"] is None, now
    estimated = now["windows"][0]["estimated"]["accuracy"]
    assert 0.85 < estimated <= 1.0, now
    assert now["reference"]["accuracy"] > 0.9, now

    # The labels arrive later, as a CSV of request ids; one names no request.
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["request_id", "label"])
        for request_id, truth, _ in answered:
            writer.writerow([request_id, truth])
        writer.writerow(["no-such-request", 1])
    uploaded = env.cli("labels", "upload", name, str(labels))
    assert "uploaded 151 labels" in uploaded.stdout and "150 match" in uploaded.stdout, \
        uploaded.stdout
    after = performance()["windows"][0]
    assert after["labeled"] == 150, after
    expected = sum(1 for _, truth, p in answered if p["label"][0] == truth) / 150
    assert abs(after["realized"]["accuracy"] - expected) < 1e-9, (after, expected)
    assert 0.5 < after["realized"]["roc_auc"] <= 1.0 and after["realized"]["log_loss"] > 0
    # Estimated and realized side by side: a calibrated model's estimate is near what it got.
    assert abs(after["estimated"]["accuracy"] - after["realized"]["accuracy"]) < 0.1, after
    text = env.cli("monitor", "performance", name, "--windows", "1").stdout
    assert "EST. ACC." in text and "150" in text, text
    # A label of the wrong shape is refused with what to send.
    r = requests.post(f"{env.server.url}/api/slipway/v1/deployments/{name}/labels",
                      json={"labels": [{"request_id": "x", "label": {"a": 1}}]}, timeout=10)
    assert r.status_code == 400 and "must be a number" in r.json()["message"], r.text
