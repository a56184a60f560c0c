"""Moving in from MLflow and out again, against the real thing: MLflow's own tracking server
(the `mlflow` package from PyPI, its SQLite store or a PostgreSQL database, and the artifact
folder it proxies) filled with the mlflow client: an experiment with tags; finished, failed
and deleted runs; params, tags, a 10,000-step metric, a dataset input, artifacts; a logged
model with params, tags, a metric and files; a registered model with a deleted version, stages,
an alias and a version whose source is the logged model (`models:/m-...`).

- `slipway import mlflow --from URL` (REST), `--from sqlite:///mlflow.db --artifacts DIR` and
  `--from postgresql://...` each fill a fresh slipway store; a slipway server on it is compared
  with MLflow's field by field through the same client. A second import changes nothing.
- `slipway export mlflow --to URL` copies that store into a second, empty MLflow server, which
  is compared with the first field by field (run and model ids differ there: MLflow makes its
  own, and each copy carries its original's as a tag). A second export changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, ViewType

from e2e_support import SlipwayServer, free_port

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MLFLOW_MODEL = MODELS / "mlflow_logreg_breast_cancer"


class MlflowServer:
    """MLflow's own server, as a team runs it: a database, artifacts it serves."""

    def __init__(self, workdir: Path, backend_store_uri: str | None = None,
                 artifacts: str | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        self.artifacts = artifacts or str(workdir / "mlartifacts")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        if not mlflow_bin.exists():
            pytest.fail("the e2e venv lacks the mlflow server (tests/e2e/requirements.txt)")
        self.log = open(workdir / "mlflow.log", "w")
        self.proc = subprocess.Popen(
            [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", self.backend_store_uri,
             "--artifacts-destination", self.artifacts, "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
            # MLflow's S3 client (boto3) finds an S3-compatible endpoint here.
            env={**os.environ, "MLFLOW_S3_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL", "")}
            if os.environ.get("AWS_ENDPOINT_URL") else None)
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, self.tail()
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.3)

    def tail(self) -> str:
        return (self.workdir / "mlflow.log").read_text()[-3000:]

    def client(self) -> MlflowClient:
        return MlflowClient(self.url, self.url)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


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
    from mlflow.entities import DatasetInput, InputTag, LoggedModelStatus
    dataset = mlflow.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), name="train-set")
    client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                            [InputTag("mlflow.data.context", "training")])])
    notes = tmp_path / "notes.txt"
    notes.write_text("trained on the October data\n")
    client.log_artifact(run_id, str(notes))
    client.log_artifacts(run_id, str(MLFLOW_MODEL), "model")

    # An MLflow 3 logged model, its files, a metric logged against it, and its output link.
    logged = client.create_logged_model(
        experiment, name="scorer", source_run_id=run_id, model_type="onnx",
        params={"threshold": "0.5"}, tags={"framework": "sklearn"})
    client.log_model_artifacts(logged.model_id, str(MLFLOW_MODEL))
    client.log_metric(run_id, "auc", 0.97, timestamp=start + 10, step=0, model_id=logged.model_id)
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
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
    client.create_model_version("imported-model", f"models:/{logged.model_id}", run_id=run_id,
                                model_id=logged.model_id)
    client.transition_model_version_stage("imported-model", "1", "Archived")
    client.transition_model_version_stage("imported-model", "3", "Production")
    return {"experiment": experiment, "train": run_id, "failed": failed.info.run_id,
            "gone": gone.info.run_id, "logged_model": logged.model_id}


@pytest.fixture(scope="module")
def mlflow_source(tmp_path_factory):
    """One filled MLflow server (SQLite) for the imports and the export."""
    work = tmp_path_factory.mktemp("mlflow-source")
    server = MlflowServer(work)
    made = _fill(server.url, work)
    yield server, made
    server.stop()


def _run(slipway_bin: str, *args: str) -> dict:
    result = subprocess.run([slipway_bin, *args, "--json"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def _import(slipway_bin: str, source: str, store: str, artifacts: str, *extra: str) -> dict:
    return _run(slipway_bin, "import", "mlflow", "--from", source, *extra,
                "--backend-store-uri", store, "--artifacts-destination", artifacts)


def _runs(client: MlflowClient, experiment_id: str) -> dict:
    return {r.info.run_id: r for r in client.search_runs([experiment_id],
                                                          run_view_type=ViewType.ALL)}


def _history(client: MlflowClient, run_id: str, key: str) -> list:
    return [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]


def _inputs(client: MlflowClient, run_id: str) -> list:
    return [(d.dataset.name, d.dataset.digest, d.dataset.source_type,
             sorted((t.key, t.value) for t in d.tags))
            for d in client.get_run(run_id).inputs.dataset_inputs]


def _same_files(a: MlflowClient, a_run: str, b: MlflowClient, b_run: str, tmp: Path):
    for path in ("notes.txt", "model/model.onnx", "model/MLmodel"):
        mine = Path(a.download_artifacts(a_run, path, str(tmp / "a" / a_run)))
        theirs = Path(b.download_artifacts(b_run, path, str(tmp / "b" / b_run)))
        assert mine.read_bytes() == theirs.read_bytes(), path


def _model_files(client: MlflowClient, model_id: str, tmp: Path) -> dict:
    import mlflow.artifacts
    out = tmp / model_id
    mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_logged_model(model_id).artifact_location,
        dst_path=str(out), tracking_uri=client._tracking_client.tracking_uri)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def own(tags: dict) -> dict:
    """Tags the user set: not the ones MLflow or slipway add (a version's content digest)."""
    return {k: v for k, v in tags.items() if not k.startswith(("mlflow.", "slipway."))}


def _compare(source: MlflowClient, target: MlflowClient, made: dict, tmp: Path,
             run_map: dict | None = None, model_map: dict | None = None):
    """Everything `_fill` made, field by field; ids mapped where the target made its own."""
    run_map = run_map or {r: r for r in (made["train"], made["failed"], made["gone"])}
    model_map = model_map or {made["logged_model"]: made["logged_model"]}
    ours = target.get_experiment_by_name("imported-exp")
    assert ours.tags["team"] == "fraud"
    before = _runs(source, made["experiment"])
    after = _runs(target, ours.experiment_id)
    assert set(after) == {run_map[r] for r in before}
    for run_id, original in before.items():
        copy = after[run_map[run_id]]
        for field in ("status", "start_time", "end_time", "user_id", "run_name",
                      "lifecycle_stage"):
            assert getattr(copy.info, field) == getattr(original.info, field), (run_id, field)
        assert copy.data.params == original.data.params
        assert copy.data.metrics == original.data.metrics
        for key, value in original.data.tags.items():
            assert copy.data.tags.get(key) == value, (run_id, key)
    train = run_map[made["train"]]
    assert _history(target, train, "loss") == _history(source, made["train"], "loss")
    assert len(_history(target, train, "loss")) == 10_000
    assert _inputs(target, train) == _inputs(source, made["train"]) and _inputs(target, train)
    _same_files(target, train, source, made["train"], tmp)

    # The logged model: its fields, params, tags, metric, files, and the run's link to it.
    theirs = source.get_logged_model(made["logged_model"])
    mine = target.get_logged_model(model_map[made["logged_model"]])
    for field in ("name", "model_type", "status"):
        assert getattr(mine, field) == getattr(theirs, field), field
    assert mine.source_run_id == run_map[theirs.source_run_id]
    assert mine.params == theirs.params
    assert own(mine.tags) == own(theirs.tags) == {"framework": "sklearn"}
    assert [(m.key, m.value, m.step) for m in mine.metrics] == \
        [(m.key, m.value, m.step) for m in theirs.metrics]
    assert _model_files(target, mine.model_id, tmp / "ours") == \
        _model_files(source, theirs.model_id, tmp / "theirs")
    outputs = lambda c, r: [o.model_id for o in c.get_run(r).outputs.model_outputs]
    assert outputs(target, train) == [model_map[m] for m in outputs(source, made["train"])]

    # The registry: numbers kept with the gap, stages, the alias, tags, descriptions, sources.
    model = target.get_registered_model("imported-model")
    assert model.description == "fraud scorer" and model.tags == {"owner": "risk"}
    assert target.get_model_version_by_alias("imported-model", "champion").version == "3"
    versions = {int(v.version): v for v in target.search_model_versions("name='imported-model'")}
    originals = {int(v.version): v for v in source.search_model_versions("name='imported-model'")}
    assert sorted(versions) == sorted(originals) == [1, 3, 4]
    for number, original in originals.items():
        copy = versions[number]
        assert copy.current_stage == original.current_stage, number
        assert copy.run_id == run_map[original.run_id], number
        assert copy.description == original.description, number
        assert own(copy.tags) == own(original.tags), number
    assert versions[1].current_stage == "Archived" and versions[3].current_stage == "Production"
    assert versions[4].source == f"models:/{model_map[made['logged_model']]}", versions[4].source
    # (The client leaves a version's model_id out of its entity; the source names the model.)


def _check_slipway_copy(slipway_bin, made, source: MlflowClient, store, artifacts, tmp):
    server = SlipwayServer(slipway_bin, tmp / "slipway", backend_store_uri=store,
                           artifacts_destination=artifacts).start()
    try:
        target = MlflowClient(server.url, server.url)
        _compare(source, target, made, tmp)
        # A source under the run's artifacts now points where they are.
        three = target.get_model_version("imported-model", "3")
        assert three.source == f"runs:/{made['train']}/model", three.source
        # models:/ resolves to the registered files, digest-checked, for both kinds of source.
        for version in ("3", "4"):
            files = requests.get(f"{server.url}/api/slipway/v1/model-versions/content",
                                 params={"name": "imported-model", "version": version}, timeout=10)
            assert files.status_code == 200, files.text
            assert {f["path"] for f in files.json()["files"]} >= {"model.onnx", "MLmodel"}
        # Every write was audited, as the importer.
        audit = subprocess.run([slipway_bin, "audit", "verify", "--backend-store-uri", store],
                               capture_output=True, text=True, timeout=60)
        assert audit.returncode == 0 and "intact" in audit.stdout, audit.stderr
    finally:
        server.stop()


def _assert_whole(first: dict):
    assert first["matches"] is True, first
    counts = first["imported"] if "imported" in first else first["exported"]
    assert counts["runs"] == 3 and counts["metric_points"] >= 10_003, counts
    assert counts["logged_models"] == 1, counts
    assert counts["versions"] == 3 and counts["stages"] == 2 and counts["aliases"] == 1, counts


def test_an_mlflow_server_is_imported_whole_and_twice_changes_nothing(
        mlflow_source, slipway_bin, tmp_path):
    server, made = mlflow_source
    store = f"sqlite:///{tmp_path / 'slipway' / 'slipway.db'}"
    artifacts = str(tmp_path / "slipway" / "artifacts")
    first = _import(slipway_bin, server.url, store, artifacts)
    _assert_whole(first)
    assert first["runs_already_whole"] == 0
    _check_slipway_copy(slipway_bin, made, server.client(), store, artifacts, tmp_path)

    # Again: everything is there already, nothing is written.
    second = _import(slipway_bin, server.url, store, artifacts)
    assert second["matches"] is True
    assert second["runs_already_whole"] == 3
    assert second["imported"] == first["imported"]


def test_mlflow_s_sqlite_database_is_imported_with_its_artifact_folder(
        mlflow_source, slipway_bin, tmp_path):
    server, made = mlflow_source
    store = f"sqlite:///{tmp_path / 'slipway' / 'slipway.db'}"
    artifacts = str(tmp_path / "slipway" / "artifacts")
    database = server.backend_store_uri
    # Without the folder its proxied artifacts live in, the command says what to give.
    missing = subprocess.run(
        [slipway_bin, "import", "mlflow", "--from", database, "--backend-store-uri", store,
         "--artifacts-destination", artifacts], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "--artifacts" in missing.stderr, missing.stderr
    first = _import(slipway_bin, database, store, artifacts, "--artifacts", server.artifacts)
    _assert_whole(first)
    _check_slipway_copy(slipway_bin, made, server.client(), store, artifacts, tmp_path)
    second = _import(slipway_bin, database, store, artifacts, "--artifacts", server.artifacts)
    assert second["matches"] is True and second["runs_already_whole"] == 3


def test_mlflow_s_postgresql_database_is_imported_with_its_bucket(
        fresh_postgres, slipway_bin, tmp_path):
    """MLflow as a platform team runs it: PostgreSQL, and artifacts in S3 when this pass has
    one (moto's server, scripts/test.sh), read with `--artifacts s3://...`."""
    mlflow_db = fresh_postgres().replace("postgresql://", "postgresql+psycopg://", 1)
    bucket = os.environ.get("E2E_ARTIFACTS_DESTINATION", "")
    artifacts = (f"{bucket.rstrip('/')}-mlflow-{uuid.uuid4().hex[:8]}"
                 if bucket.startswith("s3://") else None)
    server = MlflowServer(tmp_path / "mlflow", backend_store_uri=mlflow_db, artifacts=artifacts)
    try:
        made = _fill(server.url, tmp_path)
        store = f"sqlite:///{tmp_path / 'slipway' / 'slipway.db'}"
        artifacts = str(tmp_path / "slipway" / "artifacts")
        first = _import(slipway_bin, mlflow_db, store, artifacts, "--artifacts",
                        server.artifacts)
        _assert_whole(first)
        _check_slipway_copy(slipway_bin, made, server.client(), store, artifacts, tmp_path)
    finally:
        server.stop()


def test_slipway_exports_into_an_empty_mlflow_server_and_twice_changes_nothing(
        mlflow_source, slipway_bin, tmp_path):
    server, made = mlflow_source
    store = f"sqlite:///{tmp_path / 'slipway' / 'slipway.db'}"
    artifacts = str(tmp_path / "slipway" / "artifacts")
    _assert_whole(_import(slipway_bin, server.url, store, artifacts))
    out = MlflowServer(tmp_path / "mlflow-out")
    try:
        export = ["export", "mlflow", "--to", out.url, "--backend-store-uri", store,
                  "--artifacts-destination", artifacts]
        first = _run(slipway_bin, *export)
        _assert_whole(first)
        assert first["runs_already_whole"] == 0
        target = out.client()
        experiment = target.get_experiment_by_name("imported-exp")
        copies = _runs(target, experiment.experiment_id)
        run_map = {r.data.tags["slipway.source_run_id"]: r.info.run_id for r in copies.values()}
        models = target.search_logged_models(experiment_ids=[experiment.experiment_id])
        model_map = {m.tags["slipway.source_model_id"]: m.model_id for m in models}
        _compare(server.client(), target, made, tmp_path, run_map, model_map)
        second = _run(slipway_bin, *export)
        assert second["matches"] is True and second["runs_already_whole"] == 3
        assert second["exported"] == first["exported"]
        assert len(_runs(target, experiment.experiment_id)) == 3
    finally:
        out.stop()
