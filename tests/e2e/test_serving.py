"""Serving a registered model: the mlflow client logs and registers the MLflow ONNX fixture,
`slipway serve -m models:/NAME@ALIAS` fetches it from the tracking server and answers both
MLflow's scoring protocol and the V2 protocol with the predictions onnxruntime recorded."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from e2e_support import free_port, unique_name

pytestmark = pytest.mark.slipway_only

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "mlflow_logreg_breast_cancer"


def _runtime_available() -> bool:
    path = os.environ.get("ORT_DYLIB_PATH") or str(
        Path.home() / ".cache" / "slipway-onnxruntime" / "1.32.0" / "libonnxruntime.so.1.32.0")
    return Path(path).is_file()


@pytest.fixture
def registered_model(tracking_uri, experiment_id):
    client = MlflowClient(tracking_uri, tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(FIXTURE), artifact_path="model")
    name = unique_name("served")
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return name


def test_serve_a_registered_model_over_both_protocols(registered_model, tracking_uri, slipway_bin,
                                                      tmp_path):
    if not _runtime_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and ONNX Runtime is missing (scripts/fetch-onnxruntime.sh)")
        pytest.skip("needs ONNX Runtime: run scripts/fetch-onnxruntime.sh")
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([slipway_bin, "serve", "-m", f"models:/{registered_model}@champion",
                             "--tracking-uri", tracking_uri, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if requests.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)

        example = json.loads((FIXTURE / "serving_input_example.json").read_text())
        r = requests.post(f"{base}/invocations", json=example, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers.get("x-request-id")
        predictions = r.json()["predictions"]
        # What `mlflow models serve` answers for these rows (reference SERVING.md).
        assert predictions["label"] == [1, 0]
        assert predictions["probabilities"][0] == pytest.approx([0.004246234893798828, 0.9957537651062012], abs=1e-5)

        v2 = requests.post(f"{base}/v2/models/{registered_model}/infer", timeout=30, json={
            "inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": example["inputs"]}]})
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o for o in v2.json()["outputs"]}
        assert outputs["label"]["data"] == [1, 0]
        assert outputs["probabilities"]["shape"] == [2, 2]
        meta = requests.get(f"{base}/v2/models/{registered_model}", timeout=10).json()
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
        assert meta["versions"] == ["1"]
        assert requests.get(f"{base}/v2/models/{registered_model}/versions/1/ready", timeout=10).status_code == 200
        assert requests.get(f"{base}/v2/models/{registered_model}/versions/2/ready", timeout=10).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_serving_an_unknown_alias_fails_with_a_message(tracking_uri, slipway_bin):
    result = subprocess.run([slipway_bin, "serve", "-m", f"models:/{unique_name('nothing')}@champion",
                             "--tracking-uri", tracking_uri, "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "RESOURCE_DOES_NOT_EXIST" in result.stderr, result.stderr
