"""Registers the benchmark's MLflow model folder twice (versions 1 and 2) on a slipway server,
with nothing but the standard library, so the deployment benchmark needs no mlflow client:
   register_deployment.py URL MODEL_DIR NAME"""
import json
import sys
import urllib.request
from pathlib import Path

base, folder, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


def call(method, path, body=None, raw=None, content_type="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else {}


call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
for _ in range(2):
    run = call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "0"})["run"]["info"]
    root = run["artifact_uri"].split("mlflow-artifacts:/", 1)[1]
    for file in ("MLmodel", "model.onnx"):
        call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{root}/model/{file}",
             raw=(folder / file).read_bytes(), content_type="application/octet-stream")
    call("POST", "/api/2.0/mlflow/model-versions/create",
         {"name": name, "source": f"runs:/{run['run_id']}/model", "run_id": run["run_id"]})
call("POST", "/api/2.0/mlflow/registered-models/alias",
     {"name": name, "alias": "production", "version": "1"})
