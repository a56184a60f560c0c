"""Explanations end to end: the breast-cancer logistic regression registered with the mlflow
client, its monitoring reference built with `slipway monitor reference create` from
scikit-learn's data, a deployment, and `POST /deployments/NAME/explain` on the server; the
attributions checked against the model's own coefficients (read from its ONNX graph), their
errors against the number of samples, the limits refused; then `slipway serve` explaining the
same rows against background rows sent with the request."""

from __future__ import annotations

import csv
import os
import random
import statistics
import subprocess
import time

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import free_port, unique_name, wait_ready
from test_deployments import EXAMPLE, MLFLOW_MODEL, _require_runtime

pytestmark = pytest.mark.slipway_only

sklearn_datasets = pytest.importorskip("sklearn.datasets")
onnx = pytest.importorskip("onnx")

ROWS = EXAMPLE["inputs"]


def _model_directions() -> list[float]:
    """Per input feature, how much it moves the logit of class 1: the graph scales the input
    (Scaler: (x - offset) * scale) and scores it linearly (LinearClassifier, one row of
    coefficients per class)."""
    model = onnx.load(str(MLFLOW_MODEL / "model.onnx"))
    attributes = {}
    for node in model.graph.node:
        for attribute in node.attribute:
            attributes[(node.op_type, attribute.name)] = onnx.helper.get_attribute_value(attribute)
    scale = attributes[("Scaler", "scale")]
    coefficients = attributes[("LinearClassifier", "coefficients")]
    width = len(scale)
    assert len(coefficients) == 2 * width and attributes[("LinearClassifier", "classlabels_ints")] == [0, 1]
    return [(coefficients[width + j] - coefficients[j]) * scale[j] for j in range(width)]


class Env:
    def __init__(self, server, slipway_bin, tmp_path):
        self.server = server
        self.bin = slipway_bin
        self.client = MlflowClient(server.url, server.url)
        self.model = unique_name("explained")
        self.client.create_registered_model(self.model)
        experiment = self.client.get_experiment_by_name("Default").experiment_id
        run = self.client.create_run(experiment)
        self.client.log_artifacts(run.info.run_id, str(MLFLOW_MODEL), "model")
        self.version = self.client.create_model_version(
            self.model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
        data = sklearn_datasets.load_breast_cancer()
        self.names = [str(name) for name in data.feature_names]
        self.rows = data.data.tolist()
        self.means = [statistics.fmean(column) for column in zip(*self.rows)]
        self.reference = tmp_path / "reference.csv"
        with self.reference.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*self.names, "target"])
            for row, label in zip(self.rows, data.target.tolist()):
                writer.writerow([*row, label])

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, MLFLOW_TRACKING_URI=self.server.url)
        result = subprocess.run([self.bin, *args], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
        return result


@pytest.fixture
def env(slipway_factory, slipway_bin, tmp_path):
    _require_runtime()
    return Env(slipway_factory(), slipway_bin, tmp_path)


def _wait_served(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while requests.get(url, timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"{url} never answered 200"
        time.sleep(0.2)


def _attributions(row: dict) -> list[float]:
    return [a["attribution"] for a in row["attributions"]]


def _mean_stderr(answer: dict) -> float:
    return statistics.fmean(a["stderr"] for row in answer["rows"] for a in row["attributions"])


def _correlation(a: list[float], b: list[float]) -> float:
    return statistics.correlation(a, b)


def test_a_deployment_explains_its_predictions_against_its_reference(env, tmp_path):
    name = unique_name("x")
    env.cli("deploy", "create", name, "--model", f"models:/{env.model}/{env.version}")
    url = f"{env.server.url}/deployments/{name}/explain"
    _wait_served(f"{env.server.url}/deployments/{name}/ping")

    # Without a reference there is nothing to draw the background from, and the answer says
    # how to make one.
    r = requests.post(url, json={"inputs": ROWS}, timeout=60)
    assert r.status_code == 400, r.text
    assert "slipway monitor reference create" in r.json()["message"], r.text

    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")

    started = time.monotonic()
    r = requests.post(url, json={"inputs": ROWS, "samples": 400, "seed": 1, "class": 1},
                      timeout=60)
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    answer = r.json()
    print(f"explained 2 rows x 400 samples x 31 ({answer['model_rows']} model rows) in {took:.2f} s")
    assert answer["model"] == {"name": env.model, "version": env.version}
    assert answer["background"] == "reference" and answer["samples"] == 400 and answer["seed"] == 1
    assert answer["output"] == "probability of class 1"
    assert answer["model_rows"] == 2 * 400 * 31 + 2
    directions = _model_directions()
    for x, row in zip(ROWS, answer["rows"]):
        assert [a["feature"] for a in row["attributions"]] == env.names
        assert [a["value"] for a in row["attributions"]] == pytest.approx(x, rel=1e-6)
        assert all(a["stderr"] > 0 for a in row["attributions"]), row
        # Efficiency: the attributions add up to the prediction minus the base value.
        moved = abs(row["prediction"] - row["base_value"])
        assert moved > 0.1, row
        assert row["efficiency_gap"] <= 1e-4 * moved, row

        # What the model itself says: feature j moves the logit by d_j (x_j - E[x_j]). The
        # probability is monotone in the logit, so each sample's contribution of feature j
        # has the sign of d_j (x_j - z_j); the features that weigh most in the logit weigh
        # most here, with the same sign.
        logit_shares = [d * (v - m) for d, v, m in zip(directions, x, env.means)]
        by_logit = sorted(range(30), key=lambda j: -abs(logit_shares[j]))
        phi = _attributions(row)
        by_phi = sorted(range(30), key=lambda j: -abs(phi[j]))
        assert by_phi[0] in by_logit[:3], (by_phi[:5], by_logit[:5])
        assert len(set(by_phi[:5]) & set(by_logit[:8])) >= 4, (by_phi[:5], by_logit[:8])
        for j in by_phi[:5]:
            if abs(phi[j]) > 3 * row["attributions"][j]["stderr"]:
                assert (phi[j] > 0) == (logit_shares[j] > 0), (env.names[j], phi[j], logit_shares[j])
        print("top features:", [(env.names[j], round(phi[j], 4)) for j in by_phi[:5]])

    # Each row's predicted class by default: probabilities of two classes, each its own base.
    r = requests.post(url, json={"inputs": ROWS, "samples": 400, "seed": 1}, timeout=60)
    assert r.status_code == 200, r.text
    own = r.json()
    assert [row["class"] for row in own["rows"]] == [1, 0]
    assert own["output"] is None and own["base_value"] is None
    # Class 0's probability is one minus class 1's: its attributions are the opposite ones.
    assert _attributions(own["rows"][1]) == pytest.approx(
        [-v for v in _attributions(answer["rows"][1])], abs=1e-5)

    # More samples, smaller errors: as one over their square root (sqrt(50/400) = 0.35).
    r = requests.post(url, json={"inputs": ROWS, "samples": 50, "seed": 2, "class": 1}, timeout=60)
    assert r.status_code == 200, r.text
    ratio = _mean_stderr(answer) / _mean_stderr(r.json())
    assert 0.25 < ratio < 0.5, ratio

    # Every limit is a 400 that says which one and what to lower.
    for body, says in [
        ({"inputs": ROWS, "samples": 5000}, "samples must be from 2"),
        ({"inputs": ROWS * 51}, "at most 100 rows"),
        ({"inputs": ROWS * 50, "samples": 2000}, "lower samples to at most 645"),
        ({"inputs": ROWS, "class": 2}, "0 to 1"),
        ({"inputs": [ROWS[0][:29]]}, "30"),
    ]:
        r = requests.post(url, json=body, timeout=60)
        assert r.status_code == 400, (body.keys(), r.text)
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert says in r.json()["message"], r.text
    # A deployment nobody has.
    r = requests.post(f"{env.server.url}/deployments/{unique_name('none')}/explain",
                      json={"inputs": ROWS}, timeout=60)
    assert r.status_code == 404, r.text

    # `slipway serve` has no store: the background comes with the request, here a sample of
    # the same data, drawn whole.
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([env.bin, "serve", "-m", str(MLFLOW_MODEL), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/ping", proc, log)
        r = requests.post(f"{base}/explain", json={"inputs": ROWS}, timeout=60)
        assert r.status_code == 400 and "background" in r.json()["message"], r.text
        background = random.Random(5).sample(env.rows, 300)
        r = requests.post(f"{base}/explain", json={
            "inputs": ROWS, "samples": 400, "seed": 1, "class": 1, "background": background},
            timeout=60)
        assert r.status_code == 200, r.text
        served = r.json()
        assert served["background"] == "rows" and served["model"]["name"] == "mlflow_logreg_breast_cancer"
        for row, on_server in zip(served["rows"], answer["rows"]):
            assert len(row["attributions"]) == 30
            assert row["attributions"][0]["feature"] == "feature_0"
            assert row["prediction"] == pytest.approx(on_server["prediction"], abs=1e-6)
            assert row["efficiency_gap"] <= 1e-4 * abs(row["prediction"] - row["base_value"])
            # Whole rows keep the features' correlations that the reference's marginals do
            # not, so the two differ, but they tell the same story.
            correlation = _correlation(_attributions(row), _attributions(on_server))
            print("serve vs server attributions: correlation", round(correlation, 3))
            assert correlation > 0.7, correlation
        r = requests.post(f"{base}/explain", json={"inputs": ROWS, "background": [[1.0] * 30] * 10_001},
                          timeout=60)
        assert r.status_code == 400 and "send a sample" in r.json()["message"], r.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
