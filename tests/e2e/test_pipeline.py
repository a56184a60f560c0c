"""`slipway pipeline run` against a running server: every executed step is a run nested under
the pipeline's run, the mlflow client inside a step logs into its step's run (MLFLOW_RUN_ID),
inputs are datasets with digests, outputs and logs are artifacts; a second run executes
nothing, and a changed input re-runs exactly what depends on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from e2e_support import unique_name

pytestmark = pytest.mark.slipway_only

PIPELINE = """
name: e2e-churn
params: {{scale: 2}}
env: {{MODEL_NAME: "{model}"}}
steps:
  prepare:
    run: {python} prepare.py
    inputs: [raw/, prepare.py]
    outputs: [data/train.csv]
  train:
    run: {python} train.py ${{params.scale}}
    inputs: [data/train.csv, train.py]
    outputs: [model/]
  lint:
    run: {python} -c "import ast, sys; ast.parse(open('train.py').read())"
    inputs: [train.py]
"""

PREPARE = """
import pathlib
rows = [l for f in sorted(pathlib.Path("raw").glob("*.csv")) for l in f.read_text().split()]
pathlib.Path("data").mkdir(exist_ok=True)
pathlib.Path("data/train.csv").write_text("\\n".join(rows) + "\\n")
"""

TRAIN = """
import os, pathlib, sys, mlflow
rows = pathlib.Path("data/train.csv").read_text().split()
scale = float(sys.argv[1])
# The step's own mlflow client logs into the run slipway made for it.
assert os.environ["MLFLOW_RUN_ID"]
pathlib.Path("model").mkdir(exist_ok=True)
pathlib.Path("model/weights.txt").write_text(str(sum(float(r) for r in rows) * scale))
with mlflow.start_run() as run:
    mlflow.log_metric("rows", len(rows))
    mlflow.log_param("scale", scale)
    mlflow.log_artifact("model/weights.txt", "model")
    # Registered from the step's run: its lineage leads to the pipeline's run.
    mlflow.MlflowClient().create_model_version(
        os.environ["MODEL_NAME"], f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
"""


def _project(root: Path, model: str) -> Path:
    (root / "raw").mkdir()
    (root / "raw" / "a.csv").write_text("1\n2\n")
    (root / "prepare.py").write_text(PREPARE)
    (root / "train.py").write_text(TRAIN)
    pipeline = root / "pipeline.yml"
    pipeline.write_text(PIPELINE.format(python=sys.executable, model=model))
    return pipeline


def _run(slipway_bin, server, pipeline: Path, *args: str) -> tuple[int, dict, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.url)
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_REGISTRY_URI", None)  # the suite's shared server is not this one
    result = subprocess.run([slipway_bin, "pipeline", "run", str(pipeline), "--json", *args],
                            env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, report, result.stderr


def _logs(project: Path) -> str:
    """The steps' logs, for a failure's message."""
    logs = project / ".slipway" / "logs"
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log"))) \
        if logs.is_dir() else "(no logs)"


def _executed(report: dict) -> list[str]:
    return sorted(s["step"] for s in report["steps"] if s["status"] in ("ran", "failed"))


def test_a_pipeline_tracks_its_steps_and_reruns_only_what_changed(slipway_factory, slipway_bin,
                                                                  tmp_path):
    server = slipway_factory()
    project = tmp_path / "project"
    project.mkdir()
    model = unique_name("piped")
    MlflowClient(server.url, server.url).create_registered_model(model)
    pipeline = _project(project, model)

    code, report, stderr = _run(slipway_bin, server, pipeline)
    assert code == 0, (stderr, report, _logs(project))
    assert _executed(report) == ["lint", "prepare", "train"], report
    client = MlflowClient(server.url)
    parent = client.get_run(report["run_id"])
    assert parent.data.tags["slipway.pipeline"] == "e2e-churn"
    assert parent.data.params["scale"] == "2"
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [report["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_step = {r.data.tags["slipway.pipeline.step"]: r for r in children}
    assert sorted(by_step) == ["lint", "prepare", "train"]
    train = by_step["train"]
    # Logged by the mlflow client inside the step, into the step's run.
    assert train.data.metrics["rows"] == 2.0
    assert train.data.params["scale"] == "2.0"
    assert "train.py 2" in train.data.params["command"]
    assert train.info.status == "FINISHED"
    inputs = {d.dataset.name: d.dataset.digest for d in train.inputs.dataset_inputs}
    assert set(inputs) == {"data/train.csv", "train.py"}, inputs
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id, "outputs/model")}
    assert artifacts == {"outputs/model/weights.txt"}, artifacts
    log = client.download_artifacts(train.info.run_id, "logs/train.log", str(tmp_path))
    assert "--- attempt 1" in Path(log).read_text()
    # The version the step registered leads back to the step's run, its data and the pipeline.
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.url)
    lineage = json.loads(subprocess.run(
        [slipway_bin, "lineage", f"models:/{model}/1", "--json"], env=env, capture_output=True,
        text=True, timeout=60, check=True).stdout)
    lineage = lineage.get("lineage", lineage)
    assert lineage["run"]["info"]["run_id"] == train.info.run_id, lineage["run"]["info"]
    assert lineage["parents"][0]["run_id"] == parent.info.run_id
    assert lineage["parents"][0]["pipeline"] == "e2e-churn"
    assert {d["name"] for d in lineage["datasets"]} == {"data/train.csv", "train.py"}, \
        lineage["datasets"]

    # Nothing changed: nothing runs, and the outputs stay.
    code, again, stderr = _run(slipway_bin, server, pipeline)
    assert code == 0, stderr
    assert _executed(again) == [] and all(s["status"] == "cached" for s in again["steps"])
    assert client.get_run(again["run_id"]).data.tags["slipway.pipeline.cached"] == \
        "lint,prepare,train"

    # Another machine with the same files and no local cache: the results come from the
    # server's artifact store, and nothing runs there either.
    other = tmp_path / "other"
    other.mkdir()
    _project(other, model)
    code, shared, stderr = _run(slipway_bin, server, other / "pipeline.yml")
    assert code == 0, stderr
    assert _executed(shared) == [], shared
    assert (other / "model" / "weights.txt").read_text() == \
        (project / "model" / "weights.txt").read_text()

    # A new raw file: prepare and what reads its output; lint does not read raw/.
    (project / "raw" / "b.csv").write_text("3\n")
    code, changed, stderr = _run(slipway_bin, server, pipeline)
    assert code == 0, stderr
    assert _executed(changed) == ["prepare", "train"], changed
    assert (project / "model" / "weights.txt").read_text() == "12.0"

    # A failing step fails the run (exit 1); its run on the server says FAILED and why.
    (project / "train.py").write_text("raise SystemExit(4)\n")
    code, failed, stderr = _run(slipway_bin, server, pipeline)
    assert code == 1, stderr
    step = next(s for s in failed["steps"] if s["step"] == "train")
    assert step["status"] == "failed" and "status 4" in step["reason"], step
    assert client.get_run(failed["run_id"]).info.status == "FAILED"

    graph = subprocess.run([slipway_bin, "pipeline", "graph", str(pipeline)],
                           capture_output=True, text=True, timeout=30)
    assert graph.returncode == 0 and "flowchart LR" in graph.stdout, graph.stderr
    assert '-->|"data/train.csv"|' in graph.stdout, graph.stdout

    bad = project / "bad.yml"
    bad.write_text("name: x\nsteps:\n  a: {run: 'echo ${params.nope}'}\n")
    refused = subprocess.run([slipway_bin, "pipeline", "run", str(bad), "--no-track"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "names no parameter" in refused.stderr, refused.stderr


def test_a_pipeline_registers_the_model_it_wrote(slipway_factory, slipway_bin, tmp_path):
    """`--register MODEL --model-path PATH` (the CI templates' path): the folder becomes the
    pipeline run's `model` artifact and a version whose run is the pipeline's."""
    server = slipway_factory()
    model = unique_name("piped")
    project = tmp_path / "project"
    project.mkdir()
    # The step registers its own version of another model, as the first test's does.
    other = unique_name("other")
    MlflowClient(server.url, server.url).create_registered_model(other)
    pipeline = _project(project, other)
    code, report, stderr = _run(slipway_bin, server, pipeline, "--register", model,
                                "--model-path", "model/")
    assert code == 0, stderr + _logs(project)
    assert report["registered"] == {"name": model, "version": 1,
                                    "model_uri": f"models:/{model}/1"}
    client = MlflowClient(server.url, server.url)
    version = client.get_model_version(model, "1")
    assert version.run_id == report["run_id"]
    assert version.source == f"runs:/{report['run_id']}/model"
    files = [f.path for f in client.list_artifacts(report["run_id"], "model")]
    assert files == ["model/weights.txt"], files
    # Registering needs the server.
    code, _, stderr = _run(slipway_bin, server, pipeline, "--register", model, "--model-path",
                           "model", "--no-track")
    assert code == 2 and "--register needs the server" in stderr, stderr


def test_the_pods_of_one_workflow_share_one_pipeline_run(slipway_factory, slipway_bin, tmp_path):
    """What an exported Argo workflow runs, pod by pod: `pipeline start --group`, each step
    with `--only STEP --group`, then `pipeline finish`: one pipeline run, every step's run under
    it, ended with the workflow's status."""
    server = slipway_factory()
    project = tmp_path / "project"
    project.mkdir()
    model = unique_name("piped")
    MlflowClient(server.url, server.url).create_registered_model(model)
    pipeline = _project(project, model)
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.url)
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_REGISTRY_URI", None)

    def slipway(*args: str) -> str:
        result = subprocess.run([slipway_bin, "pipeline", *args], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr + _logs(project)
        return result.stdout

    group = "9f1c2a7e-0000-4000-8000-000000000001"
    parent = slipway("start", str(pipeline), "--group", group).strip()
    assert slipway("start", str(pipeline), "--group", group).strip() == parent, "idempotent"
    for step in ("lint", "prepare", "train"):
        report = json.loads(slipway("run", str(pipeline), "--only", step, "--group", group,
                                    "--json"))
        assert report["run_id"] == parent, report
    client = MlflowClient(server.url)
    experiment = client.get_run(parent).info.experiment_id
    steps = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(r.data.tags["slipway.pipeline.step"] for r in steps) == [
        "lint", "prepare", "train"]
    pipelines = client.search_runs([experiment], "tags.`slipway.pipeline.group` != ''")
    assert [r.info.run_id for r in pipelines] == [parent]
    assert client.get_run(parent).info.status == "RUNNING"
    slipway("finish", str(pipeline), "--group", group, "--status", "Succeeded")
    assert client.get_run(parent).info.status == "FINISHED"
    result = subprocess.run([slipway_bin, "pipeline", "run", str(pipeline), "--group", "a b"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--group 'a b'" in result.stderr, result.stderr
