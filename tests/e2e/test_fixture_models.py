"""Every fixture model, served from the registry by a managed deployment.

Each model in tests/fixtures/models (the bare .onnx files of manifest.json, and the MLflow model
folder) is logged as a run artifact with the real mlflow client, registered as version 1 of its
own registered model, deployed with `slipway deploy create NAME --model models:/M/1` on one
private server, and queried over MLflow's scoring protocol and the V2 protocol. Every answer
must be what onnxruntime recorded in the model's `.samples.json` (labels exactly, numbers within
1e-5). Then requests a client gets wrong are refused with the protocol's 4xx and a message that
says what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import SlipwayServer
from test_deployments import MODELS, _require_runtime

pytestmark = pytest.mark.slipway_only

TOLERANCE = 1e-5
MANIFEST = json.loads((MODELS / "manifest.json").read_text())["models"]
MLFLOW_FOLDER = "mlflow_logreg_breast_cancer"


def _fixtures() -> dict[str, dict]:
    """name -> {"path", "samples", "outputs" (manifest outputs), "inputs"} for every fixture."""
    out = {}
    for name, entry in sorted(MANIFEST.items()):
        out[name] = {
            "path": MODELS / entry["file"],
            "samples": json.loads((MODELS / f"{name}.samples.json").read_text()),
            "inputs": entry["inputs"],
            "outputs": entry["outputs"],
        }
    # The MLflow model folder holds logreg_breast_cancer.onnx (byte-identical) as model.onnx.
    out[MLFLOW_FOLDER] = dict(out["logreg_breast_cancer"], path=MODELS / MLFLOW_FOLDER)
    return out


FIXTURES = _fixtures()


def test_the_manifest_lists_every_fixture_model():
    on_disk = {p.stem for p in MODELS.glob("*.onnx")}
    assert on_disk == set(MANIFEST), "fixture .onnx files and manifest.json disagree"
    assert {p.name.removesuffix(".samples.json") for p in MODELS.glob("*.samples.json")} == on_disk
    assert (MODELS / MLFLOW_FOLDER / "MLmodel").is_file()


def _deployment_name(fixture: str) -> str:
    return fixture.replace("_", "-")


class Served:
    """One private server with every fixture registered and deployed."""

    def __init__(self, server: SlipwayServer, binary: str):
        self.server = server
        self.url = server.url
        self.bin = binary
        self.client = MlflowClient(server.url, server.url)
        self.errors: dict[str, str] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, MLFLOW_TRACKING_URI=self.server.url)
        return subprocess.run([self.bin, *args], env=env, capture_output=True, text=True,
                              timeout=60)

    def register_and_deploy(self, fixture: str, path: Path) -> None:
        experiment = self.client.get_experiment_by_name("Default").experiment_id
        run = self.client.create_run(experiment, run_name=fixture)
        if path.is_dir():
            self.client.log_artifacts(run.info.run_id, str(path), "model")
        else:
            self.client.log_artifact(run.info.run_id, str(path), "model")
        self.client.set_terminated(run.info.run_id)
        model = f"fixture-{fixture}"
        self.client.create_registered_model(model)
        version = self.client.create_model_version(
            model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        assert version.version == "1"
        created = self.cli("deploy", "create", _deployment_name(fixture),
                           "--model", f"models:/{model}/1")
        if created.returncode != 0:
            self.errors[fixture] = f"deploy create failed: {created.stderr}{created.stdout}"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    binary = os.environ.get("SLIPWAY_BIN")
    if not binary:
        pytest.skip("needs SLIPWAY_BIN (starts its own slipway server)")
    _require_runtime()
    workdir = tmp_path_factory.mktemp("fixture-models")
    server = SlipwayServer(binary, workdir)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        served = Served(server, binary)
        for fixture, spec in FIXTURES.items():
            served.register_and_deploy(fixture, spec["path"])
        yield served
    finally:
        server.stop(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _assert_close(actual, expected, where: str) -> None:
    """Integers (labels, class keys) exactly; floats within TOLERANCE, never relative."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: {len(actual)} values, expected {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, int):
        assert type(actual) is int and actual == expected, f"{where}: {actual!r} != {expected!r}"
    else:
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), \
            f"{where}: {actual!r} is not a number"
        assert abs(actual - expected) <= TOLERANCE, f"{where}: {actual!r} != {expected!r} (±{TOLERANCE})"


def _is_zipmap(output: dict) -> bool:
    return output.get("kind", "tensor").startswith("sequence<map")


def _flatten(values) -> list:
    if isinstance(values, list):
        return [x for v in values for x in _flatten(v)]
    return [values]


def _v2_expected(output: dict, recorded: list) -> tuple[str, list[int], list]:
    """(datatype, shape, flat data) the V2 answer must carry for one recorded output."""
    rows = len(recorded)
    if _is_zipmap(output):
        # One {class: prob} object per row -> FP32 [rows, classes], columns in class order.
        classes = list(recorded[0])
        return "FP32", [rows, len(classes)], [row[c] for row in recorded for c in classes]
    datatype = {"int64": "INT64", "float": "FP32"}[output["dtype"]]
    shape = [rows] + ([len(recorded[0])] if isinstance(recorded[0], list) else [])
    return datatype, shape, _flatten(recorded)


@pytest.fixture(params=sorted(FIXTURES), ids=sorted(FIXTURES))
def fixture(request, served) -> str:
    assert request.param not in served.errors, served.errors[request.param]
    return request.param


def test_mlflow_scoring_answers_the_recorded_outputs(served, fixture):
    spec = FIXTURES[fixture]
    samples = spec["samples"]
    r = requests.post(f"{served.url}/deployments/{_deployment_name(fixture)}/invocations",
                      json={"inputs": samples["inputs"]}, timeout=30)
    assert r.status_code == 200, r.text[:1000]
    assert r.headers.get("x-slipway-variant") == "stable"
    assert r.headers.get("x-slipway-model-version") == "1"
    assert r.headers.get("x-request-id")
    predictions = r.json()["predictions"]
    names = [o["name"] for o in spec["outputs"]]
    # As MLflow answers: the only output's value, or an object by output name.
    if len(names) == 1:
        predictions = {names[0]: predictions}
    assert isinstance(predictions, dict) and sorted(predictions) == sorted(samples["outputs"]), \
        predictions
    for name in names:
        _assert_close(predictions[name], samples["outputs"][name], f"{fixture}.{name}")


def test_v2_answers_the_recorded_outputs(served, fixture):
    spec = FIXTURES[fixture]
    samples = spec["samples"]
    deployment = _deployment_name(fixture)
    meta = requests.get(f"{served.url}/v2/models/{deployment}", timeout=10)
    assert meta.status_code == 200, meta.text
    meta = meta.json()
    assert meta["name"] == deployment
    width = len(samples["inputs"][0])
    assert meta["inputs"] == [{"name": spec["inputs"][0]["name"], "datatype": "FP32",
                               "shape": [-1, width]}], meta
    assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in spec["outputs"]], meta
    assert requests.get(f"{served.url}/v2/models/{deployment}/ready", timeout=10).status_code == 200

    rows = samples["inputs"]
    r = requests.post(f"{served.url}/v2/models/{deployment}/infer", timeout=30, json={
        "id": f"req-{fixture}",
        "inputs": [{"name": meta["inputs"][0]["name"], "datatype": "FP32",
                    "shape": [len(rows), width], "data": _flatten(rows)}]})
    assert r.status_code == 200, r.text[:1000]
    assert r.headers.get("x-slipway-model-version") == "1"
    body = r.json()
    assert body["model_name"] == deployment
    outputs = {o["name"]: o for o in body["outputs"]}
    assert sorted(outputs) == sorted(samples["outputs"]), body
    for output in spec["outputs"]:
        name = output["name"]
        datatype, shape, data = _v2_expected(output, samples["outputs"][name])
        got = outputs[name]
        assert got["datatype"] == datatype, got
        assert got["shape"] == shape, got
        _assert_close(got["data"], data, f"{fixture}.{name} (V2)")


# ---------------------------------------------------------------------------------------------
# Requests a client gets wrong.

ERROR_MODEL = "logreg_breast_cancer"  # input 'input', 30 features
ROWS = FIXTURES[ERROR_MODEL]["samples"]["inputs"]
FLAT2 = _flatten(ROWS[:2])
OVERSIZED = b'{"inputs": [[' + b"1.0," * (9 * 1024 * 1024) + b"1.0]]}"  # > 32 MiB


def _with_string(row: list, index: int = 3) -> list:
    row = list(row)
    row[index] = "abc"
    return row


def _v2(data, shape=(2, 30), datatype="FP32", name="input") -> dict:
    return {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]}


JSON = {"content-type": "application/json"}

# (id, protocol, deployment, body (dict: JSON; bytes: raw), headers, status, message fragments)
MALFORMED = [
    ("mlflow-not-json", "mlflow", None, b'{"inputs": [[1, 2', JSON, 400, ["valid JSON"]),
    ("mlflow-content-type", "mlflow", None, json.dumps({"inputs": ROWS[:1]}).encode(),
     {"content-type": "text/plain"}, 415, ["application/json", "text/plain"]),
    ("mlflow-narrow-rows", "mlflow", None, {"inputs": [ROWS[0][:29]]}, None, 400, ["30", "29"]),
    ("mlflow-wide-rows", "mlflow", None, {"inputs": [ROWS[0] + [1.0]]}, None, 400, ["30", "31"]),
    ("mlflow-ragged-rows", "mlflow", None, {"inputs": [ROWS[0], ROWS[1][:5]]}, None, 400, ["5"]),
    ("mlflow-string-value", "mlflow", None, {"inputs": [_with_string(ROWS[0])]}, None, 400,
     ["abc", "number"]),
    ("mlflow-oversized", "mlflow", None, OVERSIZED, JSON, 413, ["limit"]),
    ("mlflow-unknown-deployment", "mlflow", "no-such-deployment", {"inputs": ROWS[:1]}, None, 404,
     ["no-such-deployment"]),
    ("v2-not-json", "v2", None, b'{"inputs": [', JSON, 400, []),
    ("v2-bytes-datatype", "v2", None, _v2(FLAT2, datatype="BYTES"), None, 400, ["BYTES", "FP32"]),
    ("v2-unknown-datatype", "v2", None, _v2(FLAT2, datatype="FP99"), None, 400, ["FP99"]),
    ("v2-shape-data-mismatch", "v2", None, _v2(FLAT2[:30]), None, 400, ["30", "[2, 30]"]),
    ("v2-wrong-width", "v2", None, _v2(FLAT2[:58], shape=(2, 29)), None, 400, ["30", "29"]),
    ("v2-string-value", "v2", None, _v2(["a"] * 60), None, 400, ["number"]),
    ("v2-unknown-input", "v2", None, _v2(FLAT2, name="x"), None, 400, ["'x'", "'input'"]),
    ("v2-oversized", "v2", None, OVERSIZED, JSON, 413, ["limit"]),
    ("v2-unknown-deployment", "v2", "no-such-deployment", _v2(FLAT2), None, 404,
     ["no-such-deployment"]),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_requests_get_the_protocols_4xx(served, case):
    _, protocol, deployment, body, headers, status, fragments = case
    assert ERROR_MODEL not in served.errors, served.errors[ERROR_MODEL]
    deployment = deployment or _deployment_name(ERROR_MODEL)
    path = (f"/deployments/{deployment}/invocations" if protocol == "mlflow"
            else f"/v2/models/{deployment}/infer")
    if isinstance(body, bytes):
        r = requests.post(served.url + path, data=body, headers=headers, timeout=60)
    else:
        r = requests.post(served.url + path, json=body, headers=headers, timeout=60)
    assert r.status_code == status, (r.status_code, r.text[:500])
    if protocol == "mlflow" and status == 415:
        # `mlflow models serve` answers an unsupported content type with this plain-text line
        # (mlflow/pyfunc/scoring_server); slipway keeps it word for word.
        assert r.headers["content-type"].startswith("text/plain"), r.headers
        message = r.text
    elif protocol == "mlflow":
        answer = r.json()
        assert set(answer) == {"error_code", "message"}, answer
        assert isinstance(answer["error_code"], str) and answer["error_code"], answer
        message = answer["message"]
    else:
        answer = r.json()
        assert set(answer) == {"error"}, answer
        message = answer["error"]
    assert isinstance(message, str) and message, r.text[:500]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    # The refused request did not hurt the deployment.
    if deployment == _deployment_name(ERROR_MODEL):
        ok = requests.post(f"{served.url}/deployments/{deployment}/invocations",
                           json={"inputs": ROWS[:1]}, timeout=30)
        assert ok.status_code == 200, ok.text
