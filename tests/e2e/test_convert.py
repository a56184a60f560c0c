"""`slipway models convert`: the mlflow client logs real scikit-learn and LightGBM models the
way MLflow users do (mlflow.sklearn, mlflow.lightgbm), slipway converts each to ONNX in the
Python environment it manages, checks it against the original, registers it as a new version,
and `slipway serve -m models:/NAME/2` answers what the original model predicts.

The first conversion installs the converter's environment (SLIPWAY_CONVERT_VENV when set, else
slipway's default under ~/.cache); later ones reuse it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests

from e2e_models import log_add_n
from e2e_support import free_port, unique_name

# The conversion and its checks happen in the CLI's own Python environment; the server only
# registers the result, which the registry tests cover on both backends.
pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

sklearn_datasets = pytest.importorskip("sklearn.datasets")
# Installing the converter's environment the first time takes a while; conversions are seconds.
CONVERT_TIMEOUT = 900


def _runtime_available() -> bool:
    path = os.environ.get("ORT_DYLIB_PATH") or str(
        Path.home() / ".cache" / "slipway-onnxruntime" / "1.32.0" / "libonnxruntime.so.1.32.0")
    return Path(path).is_file()


@pytest.fixture(scope="module")
def breast_cancer():
    data = sklearn_datasets.load_breast_cancer(as_frame=True)
    return data.data, data.target


def convert(slipway_bin, tracking_uri, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    return subprocess.run([slipway_bin, "models", "convert", *args], capture_output=True,
                          text=True, timeout=CONVERT_TIMEOUT, env=env, stdin=subprocess.DEVNULL)


@contextmanager
def served(slipway_bin, tracking_uri, model_uri, tmp_path):
    if not _runtime_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and ONNX Runtime is missing (scripts/fetch-onnxruntime.sh)")
        pytest.skip("needs ONNX Runtime: run scripts/fetch-onnxruntime.sh")
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([slipway_bin, "serve", "-m", model_uri, "--tracking-uri",
                                 tracking_uri, "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if requests.get(f"{base}/ping", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def converted(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout)


def assert_serves_like(base: str, body: dict, model, rows) -> None:
    r = requests.post(f"{base}/invocations", json=body, timeout=30)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert predictions["label"] == [int(v) for v in model.predict(rows)]
    np.testing.assert_allclose(predictions["probabilities"], model.predict_proba(rows), atol=1e-4)


def test_a_scikit_learn_pipeline_logged_with_skops_is_converted_checked_and_served(
        breast_cancer, experiment_id, tracking_uri, slipway_bin, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = breast_cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    name = unique_name("convert-logreg")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("auc", 0.99)
        # mlflow.sklearn's default format here is skops; named columns give a column signature.
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(5),
                                 registered_model_name=name)

    out = converted(convert(slipway_bin, tracking_uri, f"models:/{name}/1", "--json"))
    assert out["model_version"] == {"name": name, "version": "2", "model_uri": f"models:/{name}/2"}
    check = out["check"]
    assert check["passed"] is True
    assert check["rows"] == 5 and check["labels_agree"] == 5
    assert check["row_source"] == "the input example"
    assert check["max_abs_diff"] <= 1e-4
    assert out["converter"].startswith("skl2onnx ")
    assert out["run_id"] == run.info.run_id and out["artifact_path"] == "model-onnx"
    assert f"slipway serve -m models:/{name}/2" in out["next"]

    client = mlflow.MlflowClient()
    version = client.get_model_version(name, "2")
    assert version.tags["slipway.converted_from"] == f"models:/{name}/1"
    assert version.tags["slipway.source_run"] == run.info.run_id
    assert version.run_id == run.info.run_id
    files = {a.path for a in client.list_artifacts(run.info.run_id, "model-onnx")}
    assert {"model-onnx/MLmodel", "model-onnx/model.onnx",
            "model-onnx/input_example.json"} <= files, files

    # Lineage says where the version came from, and its run is the training run.
    lineage = subprocess.run([slipway_bin, "lineage", f"models:/{name}/2", "--tracking-uri",
                              tracking_uri], capture_output=True, text=True, timeout=60)
    assert lineage.returncode == 0, lineage.stderr
    assert f"converted from models:/{name}/1 with skl2onnx" in lineage.stdout, lineage.stdout
    assert "metric auc = 0.99" in lineage.stdout, lineage.stdout

    rows = X.iloc[100:140]
    with served(slipway_bin, tracking_uri, f"models:/{name}/2", tmp_path) as base:
        assert_serves_like(base, {"dataframe_split": {
            "columns": list(rows.columns), "data": rows.values.tolist()}}, model, rows)


def test_a_random_forest_pickled_with_cloudpickle_is_converted_next_to_the_original(
        breast_cancer, experiment_id, tracking_uri, slipway_bin, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    X, y = breast_cancer
    features = X.to_numpy()
    model = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0).fit(features, y)
    name = unique_name("convert-forest")
    with mlflow.start_run(experiment_id=experiment_id):
        # A numpy input example: a tensor signature without column names.
        mlflow.sklearn.log_model(model, name="model", input_example=features[:8],
                                 serialization_format="cloudpickle", registered_model_name=name)

    result = convert(slipway_bin, tracking_uri, f"models:/{name}@champion")
    assert result.returncode != 0
    assert "alias champion not found" in result.stderr, result.stderr
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", "1")

    out = converted(convert(slipway_bin, tracking_uri, f"models:/{name}@champion", "--json"))
    assert out["source"]["model_uri"] == f"models:/{name}/1"
    assert out["check"]["rows"] == 8 and out["check"]["labels_agree"] == 8

    rows = features[200:260]
    with served(slipway_bin, tracking_uri, out["model_version"]["model_uri"], tmp_path) as base:
        assert_serves_like(base, {"inputs": rows.tolist()}, model, rows)


def test_a_lightgbm_classifier_without_an_input_example_is_checked_on_given_rows(
        breast_cancer, experiment_id, tracking_uri, slipway_bin, tmp_path):
    lightgbm = pytest.importorskip("lightgbm")
    from mlflow.models import infer_signature

    X, y = breast_cancer
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1).fit(X, y)
    name = unique_name("convert-lgbm")
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.lightgbm.log_model(model, name="model",
                                  signature=infer_signature(X, model.predict(X)),
                                  registered_model_name=name)
    sample = tmp_path / "rows.csv"
    X.iloc[:50].to_csv(sample, index=False)

    text = convert(slipway_bin, tracking_uri, f"models:/{name}/1", "--sample-rows", str(sample),
                   "--name", f"{name}-onnx")
    assert text.returncode == 0, text.stderr
    assert f"registered models:/{name}-onnx/1" in text.stdout, text.stdout
    assert "checked on 50 rows (--sample-rows)" in text.stdout, text.stdout
    assert "onnxmltools" in mlflow.MlflowClient().get_model_version(
        f"{name}-onnx", "1").tags["slipway.converter"]

    rows = X.iloc[300:340]
    with served(slipway_bin, tracking_uri, f"models:/{name}-onnx/1", tmp_path) as base:
        assert_serves_like(base, {"dataframe_records": rows.to_dict(orient="records")}, model,
                           rows)


def test_what_cannot_be_converted_fails_with_a_message_not_a_traceback(
        breast_cancer, experiment_id, tracking_uri, slipway_bin, tmp_path):
    from sklearn.linear_model import LogisticRegression

    client = mlflow.MlflowClient()
    name = unique_name("convert-pyfunc")
    with mlflow.start_run(experiment_id=experiment_id):
        log_add_n(1, registered_model_name=name)
    result = convert(slipway_bin, tracking_uri, f"models:/{name}/1")
    assert result.returncode != 0
    assert "converts sklearn, xgboost and lightgbm models" in result.stderr, result.stderr
    assert "python_function" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    # Rows that do not fit the model are the user's to fix: said plainly, nothing registered.
    X, y = breast_cancer
    name = unique_name("convert-rows")
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.sklearn.log_model(LogisticRegression(max_iter=50).fit(X.to_numpy()[:, :3], y),
                                 name="model", input_example=X.to_numpy()[:2, :3],
                                 registered_model_name=name)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"inputs": [[1.0, 2.0]]}))
    result = convert(slipway_bin, tracking_uri, f"models:/{name}/1", "--sample-rows", str(rows))
    assert result.returncode != 0
    assert "the sample rows have 2 values per row; the model takes 3" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    result = convert(slipway_bin, tracking_uri, "runs:/abc/model")
    assert result.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in result.stderr, result.stderr
