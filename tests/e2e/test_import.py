"""`slipway import mlflow`: a real MLflow tracking server (the `mlflow` package from PyPI, its
own SQLite store and artifact folder) filled with the mlflow client (an experiment with tags,
finished, failed and deleted runs, params, tags, a 10,000-step metric, a dataset input,
artifacts, a registered model with a deleted version and an alias), imported into a fresh
slipway store, and compared field by field through a slipway server with the same client. A
second import changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

from e2e_support import SlipwayServer, free_port

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MLFLOW_MODEL = MODELS / "mlflow_logreg_breast_cancer"


@pytest.fixture
def mlflow_server(tmp_path):
    """MLflow's own server, as a team runs it: SQLite store, artifacts it serves."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if not mlflow_bin.exists():
        pytest.fail("the e2e venv lacks the mlflow server (tests/e2e/requirements.txt)")
    port = free_port()
    log = open(tmp_path / "mlflow.log", "w")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "mlartifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, (tmp_path / "mlflow.log").read_text()[-3000:]
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _fill(url: str, tmp_path: Path) -> dict:
    client = MlflowClient(url, url)
    experiment = client.create_experiment("imported-exp", tags={"team": "fraud"})
    train = client.create_run(experiment, run_name="train", tags={"stage": "dev"})
    run_id = train.info.run_id
    for key, value in {"lr": "0.1", "depth": "6", "penalty": "l2"}.items():
        client.log_param(run_id, key, value)
    start = 1_700_000_000_000
    for chunk in range(10):
        client.log_batch(run_id, metrics=[
            Metric("loss", 1.0 / (i + 1), start + i, i) for i in range(chunk * 1000, chunk * 1000 + 1000)])
    client.log_metric(run_id, "accuracy", 0.91, timestamp=start, step=0)
    client.log_metric(run_id, "accuracy", 0.93, timestamp=start + 5, step=1)
    # With the client, not the fluent API: the suite's other tests set fluent state (the
    # tracking URI, an active experiment) that this must neither use nor change.
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    dataset = mlflow.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), name="train-set")
    client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                            [InputTag("mlflow.data.context", "training")])])
    notes = tmp_path / "notes.txt"
    notes.write_text("trained on the October data\n")
    client.log_artifact(run_id, str(notes))
    client.log_artifacts(run_id, str(MLFLOW_MODEL), "model")
    client.set_terminated(run_id, "FINISHED", end_time=start + 60_000)

    failed = client.create_run(experiment, run_name="broken")
    client.log_param(failed.info.run_id, "lr", "10")
    client.set_terminated(failed.info.run_id, "FAILED", end_time=start + 1_000)
    gone = client.create_run(experiment, run_name="abandoned")
    client.set_terminated(gone.info.run_id, "KILLED")
    client.delete_run(gone.info.run_id)

    client.create_registered_model("imported-model", tags={"owner": "risk"},
                                   description="fraud scorer")
    client.create_model_version("imported-model", f"runs:/{run_id}/model", run_id=run_id)
    client.create_model_version("imported-model", f"runs:/{run_id}/model", run_id=run_id)
    third = client.create_model_version(
        "imported-model", f"{train.info.artifact_uri}/model", run_id=run_id,
        tags={"validated": "yes"}, description="the good one")
    client.delete_model_version("imported-model", "2")
    client.set_registered_model_alias("imported-model", "champion", third.version)
    return {"experiment": experiment, "train": run_id, "failed": failed.info.run_id,
            "gone": gone.info.run_id}


def _import(slipway_bin: str, url: str, store: str, artifacts: str) -> dict:
    result = subprocess.run(
        [slipway_bin, "import", "mlflow", "--from", url, "--backend-store-uri", store,
         "--artifacts-destination", artifacts, "--json"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def _runs(client: MlflowClient, experiment_id: str) -> dict:
    from mlflow.entities import ViewType
    return {r.info.run_id: r for r in client.search_runs([experiment_id],
                                                          run_view_type=ViewType.ALL)}


def test_an_mlflow_server_is_imported_whole_and_twice_changes_nothing(
        mlflow_server, slipway_bin, tmp_path):
    made = _fill(mlflow_server, tmp_path)
    store = f"sqlite:///{tmp_path / 'slipway' / 'slipway.db'}"
    artifacts = str(tmp_path / "slipway" / "artifacts")
    first = _import(slipway_bin, mlflow_server, store, artifacts)
    assert first["matches"] is True, first
    counts = first["imported"]
    assert counts["runs"] == 3 and counts["metric_points"] == 10_002, counts
    assert counts["versions"] == 2 and counts["aliases"] == 1, counts
    assert first["runs_already_whole"] == 0

    server = SlipwayServer(slipway_bin, tmp_path / "slipway", backend_store_uri=store,
                           artifacts_destination=artifacts).start()
    try:
        source, target = MlflowClient(mlflow_server, mlflow_server), MlflowClient(server.url, server.url)
        theirs = source.get_experiment(made["experiment"])
        ours = target.get_experiment_by_name("imported-exp")
        assert ours.tags["team"] == "fraud"
        before, after = _runs(source, theirs.experiment_id), _runs(target, ours.experiment_id)
        assert set(after) == set(before) == {made["train"], made["failed"], made["gone"]}
        for run_id, original in before.items():
            copy = after[run_id]
            for field in ("status", "start_time", "end_time", "user_id", "run_name",
                          "lifecycle_stage"):
                assert getattr(copy.info, field) == getattr(original.info, field), (run_id, field)
            assert copy.data.params == original.data.params
            assert copy.data.metrics == original.data.metrics
            for key, value in original.data.tags.items():
                assert copy.data.tags.get(key) == value, (run_id, key)
        history = lambda c: [(m.step, m.timestamp, m.value)
                             for m in c.get_metric_history(made["train"], "loss")]
        assert history(target) == history(source)
        assert len(history(target)) == 10_000
        inputs = lambda c: [(d.dataset.name, d.dataset.digest, d.dataset.source_type,
                             sorted((t.key, t.value) for t in d.tags))
                            for d in c.get_run(made["train"]).inputs.dataset_inputs]
        assert inputs(target) == inputs(source) and inputs(target)
        # Artifacts byte for byte, under the kept run id.
        for path in ("notes.txt", "model/model.onnx", "model/MLmodel"):
            mine = Path(target.download_artifacts(made["train"], path, str(tmp_path / "ours")))
            theirs_file = Path(source.download_artifacts(made["train"], path,
                                                         str(tmp_path / "theirs")))
            assert mine.read_bytes() == theirs_file.read_bytes(), path
        # The registry: numbers kept with the gap, the alias, tags, descriptions.
        model = target.get_registered_model("imported-model")
        assert model.description == "fraud scorer" and model.tags == {"owner": "risk"}
        assert target.get_model_version_by_alias("imported-model", "champion").version == "3"
        numbers = sorted(int(v.version) for v in
                         target.search_model_versions("name='imported-model'"))
        assert numbers == [1, 3]
        three = target.get_model_version("imported-model", "3")
        assert three.tags["validated"] == "yes" and three.description == "the good one"
        assert three.run_id == made["train"]
        # A source under the run's artifacts now points where they are.
        assert three.source == f"runs:/{made['train']}/model", three.source
        # models:/ resolves to the registered files, digest-checked.
        files = requests.get(f"{server.url}/api/slipway/v1/model-versions/content",
                             params={"name": "imported-model", "version": "3"}, timeout=10)
        assert files.status_code == 200, files.text
        assert {f["path"] for f in files.json()["files"]} >= {"model.onnx", "MLmodel"}
        # Every write was audited, as the importer.
        audit = subprocess.run([slipway_bin, "audit", "verify", "--backend-store-uri", store],
                               capture_output=True, text=True, timeout=60)
        assert audit.returncode == 0 and "intact" in audit.stdout, audit.stderr
    finally:
        server.stop()

    # Again: everything is there already, nothing is written.
    second = _import(slipway_bin, mlflow_server, store, artifacts)
    assert second["matches"] is True
    assert second["runs_already_whole"] == 3
    assert second["imported"] == first["imported"]
