"""Retraining triggers end to end: a triggers file applied whole; a retrain fired by hand and
carried out by `slipway triggers worker` (the pipeline run and tracked, its model folder
registered, gated by the server, rolled out as a canary that the deployment's own analysis
promotes while traffic flows); a retrain on corrupted labels refused by the gate with production
left alone; cooldown and one-at-a-time refusals recorded as skipped; and the whole chain read
back from `slipway triggers history` and `slipway lineage`."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from e2e_support import unique_name
from test_deployments import Traffic, _require_runtime

pytestmark = pytest.mark.slipway_only

PREPARE = '''
import argparse, csv, random
from pathlib import Path
from sklearn.datasets import make_classification
p = argparse.ArgumentParser()
p.add_argument("--flip", type=float, default=0.0)
p.add_argument("--pause", type=float, default=0.0)
a = p.parse_args()
import time; time.sleep(a.pause)
x, y = make_classification(n_samples=1200, n_features=4, n_informative=3, n_redundant=0,
                           random_state=0)
Path("data").mkdir(exist_ok=True)
rng = random.Random(1)
for name, rows in (("train", range(0, 900)), ("holdout", range(900, 1200))):
    with open(f"data/{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f0", "f1", "f2", "f3", "y"])
        for i in rows:
            label = int(y[i])
            # Corrupted labels, in the training data only: the holdout stays true.
            if name == "train" and rng.random() < a.flip:
                label = 1 - label
            w.writerow([f"{v:.6f}" for v in x[i]] + [label])
'''

TRAIN = '''
import numpy as np
from pathlib import Path
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
t = np.loadtxt("data/train.csv", delimiter=",", skiprows=1)
model = LogisticRegression().fit(t[:, :4], t[:, 4].astype(int))
onx = to_onnx(model, t[:1, :4].astype(np.float32), options={"zipmap": False},
              target_opset=17)
Path("model").mkdir(exist_ok=True)
Path("model/model.onnx").write_bytes(onx.SerializeToString())
'''


def _pipeline(folder: Path, python: str) -> None:
    folder.mkdir(parents=True)
    (folder / "prepare.py").write_text(PREPARE)
    (folder / "train.py").write_text(TRAIN)
    (folder / "pipeline.yml").write_text(textwrap.dedent(f"""\
        name: churn
        params: {{flip: 0.0, pause: 0}}
        steps:
          prepare:
            run: {python} prepare.py --flip ${{params.flip}} --pause ${{params.pause}}
            inputs: [prepare.py]
            outputs: [data/train.csv, data/holdout.csv]
          train:
            run: {python} train.py
            inputs: [data/train.csv, train.py]
            outputs: [model/]
        """))


class Env:
    def __init__(self, server, slipway_bin, tmp_path):
        self.server = server
        self.bin = slipway_bin
        self.tmp = tmp_path
        self.model = unique_name("churn")
        self.deployment = unique_name("churnd")
        self.pipelines = tmp_path / "pipelines"
        import sys
        _pipeline(self.pipelines / "churn", sys.executable)

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(os.environ, MLFLOW_TRACKING_URI=self.server.url)
        result = subprocess.run([self.bin, *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if check:
            assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
        return result

    def apply(self, triggers: list[dict]) -> None:
        path = self.tmp / "triggers.yml"
        path.write_text(json.dumps({"triggers": triggers}))  # JSON is YAML
        self.cli("triggers", "apply", str(path))

    def worker_once(self) -> subprocess.CompletedProcess:
        return self.cli("triggers", "worker", "--pipelines-dir", str(self.pipelines), "--once",
                        check=False)

    def history(self, **filters: str) -> list[dict]:
        args = ["triggers", "history", "--json"]
        for key, value in filters.items():
            args += [f"--{key}", value]
        return json.loads(self.cli(*args).stdout)


@pytest.fixture
def env(slipway_factory, slipway_bin, tmp_path):
    _require_runtime()
    pytest.importorskip("skl2onnx")
    return Env(slipway_factory(), slipway_bin, tmp_path)


def _trigger(env: Env, name: str, **extra) -> dict:
    trigger = {
        "name": name,
        "model": env.model,
        "pipeline": "churn/pipeline.yml",
        "model_path": "model",
        "gate": {"data": "data/holdout.csv", "label": "y"},
        "cooldown": "0s",
        "max_per_day": 10,
    }
    trigger.update(extra)
    return trigger


ROWS = [[0.5, -1.0, 0.3, 1.2], [-0.7, 0.2, 1.1, -0.4], [1.5, 0.8, -0.6, 0.1]]


def test_a_retrain_runs_gates_and_promotes_and_a_bad_one_is_refused(env):
    bootstrap = _trigger(env, "first", gate={"data": "data/holdout.csv", "label": "y",
                                             "rules": ["accuracy >= 0.7"]})
    retrain = _trigger(env, "retrain", deployment=env.deployment, rollout={
        "steps": [{"weight": 50, "duration_ms": 1000}, {"weight": 100, "duration_ms": 1000}],
        "analysis": {"interval_ms": 500, "min_samples": 20},
    })
    env.apply([bootstrap, retrain])
    listed = json.loads(env.cli("triggers", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["first", "retrain"]
    assert "hand" in listed[0]["fired_by"]

    # By hand, with nothing deployed: the chain ends at a gated, registered version 1.
    fired = json.loads(env.cli("triggers", "run", "first", "--reason", "bootstrap",
                               "--json").stdout)
    assert fired["state"] == "queued" and fired["cause"] == {"kind": "manual",
                                                             "reason": "bootstrap"}
    done = env.worker_once()
    assert done.returncode == 0, done.stderr
    first = env.history(trigger="first")[0]
    assert first["state"] == "registered", first
    assert first["version"] == 1 and first["gate_id"] and first["pipeline_run_id"]
    assert first["claimed_by"] == "anonymous"
    lineage = json.loads(env.cli("lineage", f"models:/{env.model}/1", "--json").stdout)
    assert lineage["run"]["info"]["run_id"] == first["pipeline_run_id"]
    tags = {t["key"]: t["value"] for t in lineage["run"]["data"]["tags"]}
    assert tags["slipway.retrain.id"] == str(first["id"])
    assert [g["status"] for g in lineage["gates"]] == ["passed"]
    # Version <- pipeline run <- step runs <- their inputs' digests.
    steps = {s["step"]: s for s in lineage["steps"]}
    assert set(steps) == {"prepare", "train"}, lineage["steps"]
    assert len(steps["train"]["cache_key"]) == 64
    assert any(d["digest"] for d in steps["train"]["datasets"]), steps["train"]
    assert lineage["retrain"]["id"] == first["id"]
    assert lineage["retrain"]["cause"]["reason"] == "bootstrap"

    # Deployed; the retrain trigger's canary promotes version 2 on live traffic.
    env.cli("deploy", "create", env.deployment, "--model", f"models:/{env.model}/1")
    fired = json.loads(env.cli("triggers", "run", "retrain", "--json").stdout)
    assert fired["state"] == "queued"
    # One retrain at a time per model: a second firing is recorded as skipped.
    busy = env.cli("triggers", "run", "first", "--json", check=False)
    assert busy.returncode == 1
    assert "one retrain at a time" in json.loads(busy.stdout)["reason"]
    url = f"{env.server.url}/deployments/{env.deployment}/invocations"
    with Traffic(url, ROWS):
        done = env.worker_once()
    assert done.returncode == 0, done.stderr
    second = env.history(trigger="retrain")[0]
    assert second["state"] == "promoted", second
    assert second["version"] == 2 and second["rollout_id"] and second["gate_id"]
    deployment = requests.get(
        f"{env.server.url}/api/slipway/v1/deployments/{env.deployment}", timeout=10).json()
    assert deployment["deployment"]["stable_version"] == "2"
    gates = requests.get(f"{env.server.url}/api/slipway/v1/gates",
                         params={"name": env.model, "version": "2"}, timeout=10).json()["gates"]
    assert gates[0]["champion_version"] == 1 and gates[0]["passed"] is True

    # Corrupted labels: the gate refuses version 3 and production stays on version 2.
    bad = dict(retrain, params={"flip": "0.45"})
    env.apply([bootstrap, bad])
    env.cli("triggers", "run", "retrain", "--reason", "bad data")
    done = env.worker_once()
    assert done.returncode == 0, done.stderr
    third = env.history(trigger="retrain")[0]
    assert third["state"] == "gate_failed", third
    assert third["version"] == 3 and third["rollout_id"] is None
    assert "accuracy" in third["reason"] or "f1" in third["reason"], third["reason"]
    deployment = requests.get(
        f"{env.server.url}/api/slipway/v1/deployments/{env.deployment}", timeout=10).json()
    assert deployment["deployment"]["stable_version"] == "2"

    text = env.cli("triggers", "history").stdout
    assert "gate" in text and "promoted" in text and "gate failed" in text, text

    # A cooldown refuses the next firing, saying so.
    env.apply([bootstrap, dict(retrain, cooldown="1h")])
    cooling = env.cli("triggers", "run", "retrain", "--json", check=False)
    assert cooling.returncode == 1 and "cooldown" in json.loads(cooling.stdout)["reason"]
    # Every start and skip is audited.
    audit = requests.get(f"{env.server.url}/api/slipway/v1/audit",
                         params={"max_results": 1000}, timeout=10)
    assert audit.status_code == 200, audit.text
    actions = {entry["action"] for entry in audit.json()["entries"]}
    assert {"triggers.apply", "retrains.start", "retrains.skipped", "retrains.claim",
            "retrains.progress", "gates.record"} <= actions, actions


def test_bad_triggers_files_are_refused_whole(env):
    path = env.tmp / "bad.yml"
    path.write_text(json.dumps({"triggers": [_trigger(env, "x", pipeline="../outside.yml")]}))
    result = env.cli("triggers", "apply", str(path), check=False)
    assert result.returncode == 2 and "without '..'" in result.stderr, result.stderr
    path.write_text(json.dumps({"triggers": [_trigger(env, "x", on={"schedule": "daily"})]}))
    result = env.cli("triggers", "apply", str(path), check=False)
    assert result.returncode == 2 and "five fields" in result.stderr, result.stderr
    path.write_text(json.dumps({"triggers": [_trigger(env, "x", deployment="d",
                                                      rollout={"steps": "fast"})]}))
    result = env.cli("triggers", "apply", str(path), check=False)
    assert result.returncode == 2 and "rollout" in result.stderr, result.stderr
    assert json.loads(env.cli("triggers", "list", "--json").stdout) == []
    # A worker refuses a pipeline outside its folder even if the server had one.
    result = env.cli("triggers", "run", "nope", check=False)
    assert result.returncode == 2 and "no trigger 'nope'" in result.stderr, result.stderr


def test_new_data_under_a_watched_path_fires_its_trigger(env):
    """The worker's first look at a watched path (a folder beside the pipeline, or a prefix of
    the artifact store) is its baseline; a change after it fires the trigger once (the same
    data again does not)."""
    (env.pipelines / "churn" / "raw").mkdir()
    (env.pipelines / "churn" / "raw" / "batch-1.csv").write_text("a,b\n1,2\n")
    landing = f"0/{unique_name('landing')}"
    artifacts = f"{env.server.url}/api/2.0/mlflow-artifacts/artifacts/{landing}"
    assert requests.put(f"{artifacts}/batch-1.csv", data=b"a,b\n1,2\n", timeout=10).ok
    gate = {"data": "data/holdout.csv", "label": "y", "rules": ["accuracy >= 0.7"]}
    env.apply([
        _trigger(env, "fresh", on={"data": {"path": "raw/", "every": "5s"}}, gate=gate),
        _trigger(env, "landing", model=f"{env.model}-landing", gate=gate,
                 on={"data": {"path": f"mlflow-artifacts:/{landing}/", "every": "5s"}}),
    ])
    worker = subprocess.Popen(
        [env.bin, "triggers", "worker", "--pipelines-dir", str(env.pipelines), "--poll", "1s"],
        env=dict(os.environ, MLFLOW_TRACKING_URI=env.server.url),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("watching 2 data path(s), baseline taken" in line for line in lines):
            assert time.monotonic() < deadline and worker.poll() is None, lines
            time.sleep(0.2)
        assert env.history() == [], "what was there when the worker started is not news"
        (env.pipelines / "churn" / "raw" / "batch-2.csv").write_text("a,b\n3,4\n")
        assert requests.put(f"{artifacts}/sub/batch-2.csv", data=b"a,b\n3,4\n", timeout=10).ok
        deadline = time.monotonic() + 120
        done: dict[str, dict] = {}
        while time.monotonic() < deadline and len(done) < 2:
            for trigger in ("fresh", "landing"):
                retrains = env.history(trigger=trigger)
                if retrains and retrains[0]["state"] == "registered":
                    done[trigger] = retrains[0]
            time.sleep(1)
        assert set(done) == {"fresh", "landing"}, env.history()
        assert done["fresh"]["cause"]["kind"] == "data"
        assert done["fresh"]["cause"]["path"] == "raw/"
        assert done["landing"]["cause"]["path"] == f"mlflow-artifacts:/{landing}/"
        assert done["landing"]["model"] == f"{env.model}-landing"
        time.sleep(7)  # another look at the same data
        assert len(env.history()) == 2, env.history()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        reader.join(timeout=10)
    stderr = "".join(lines)
    assert "new data under raw/" in stderr, stderr


def test_a_policy_that_wants_approval_pauses_the_loop_until_given(env):
    """The deployment follows a protected alias whose policy requires approval and a passed
    gate: the retrain's gate counts (default rules, against the alias' version), its canary
    reaches the approval step, the retrain waits there, and an approval lets it finish."""
    bootstrap = _trigger(env, "first", gate={"data": "data/holdout.csv", "label": "y",
                                             "rules": ["accuracy >= 0.7"]})
    retrain = _trigger(env, "retrain", deployment=env.deployment, rollout={
        "steps": [{"weight": 50, "duration_ms": 500}],
        "analysis": {"interval_ms": 500, "min_samples": 20},
    })
    env.apply([bootstrap, retrain])
    env.cli("triggers", "run", "first")
    assert env.worker_once().returncode == 0
    client_env = dict(os.environ, MLFLOW_TRACKING_URI=env.server.url)
    from mlflow import MlflowClient
    MlflowClient(env.server.url, env.server.url).set_registered_model_alias(
        env.model, "production", "1")
    env.cli("policy", "set", env.model, "--aliases", "production", "--approvals", "1",
            "--require-gate")
    env.cli("deploy", "create", env.deployment, "--model", f"models:/{env.model}@production")
    env.cli("triggers", "run", "retrain", "--reason", "approval test")
    worker = subprocess.Popen(
        [env.bin, "triggers", "worker", "--pipelines-dir", str(env.pipelines), "--once"],
        env=client_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"{env.server.url}/deployments/{env.deployment}/invocations"
    try:
        with Traffic(url, ROWS):
            deadline = time.monotonic() + 120
            state = None
            while time.monotonic() < deadline:
                state = env.history(trigger="retrain")[0]["state"]
                if state in ("awaiting_approval", "failed", "rolled_back", "gate_failed"):
                    break
                time.sleep(1)
            assert state == "awaiting_approval", env.history(trigger="retrain")
            deployment = requests.get(
                f"{env.server.url}/api/slipway/v1/deployments/{env.deployment}",
                timeout=10).json()["deployment"]
            # The gate counted, so the unapproved candidate has the policy's share (10 %).
            assert deployment["traffic"]["weight"] == 10, deployment["traffic"]
            promotion = deployment["rollout"]["state"]["promotion_id"]
            env.cli("promote", "approve", str(promotion), "--reason", "reviewed the gate")
            _, stderr = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    last = env.history(trigger="retrain")[0]
    assert last["state"] == "promoted", last
    aliases = requests.get(f"{env.server.url}/api/2.0/mlflow/registered-models/alias",
                           params={"name": env.model, "alias": "production"}, timeout=10).json()
    assert aliases["model_version"]["version"] == "2"


def test_a_stopped_worker_gives_its_retrain_up_at_once(env):
    """A signal mid-pipeline stops the worker now, and the retrain it held is failed with the
    reason, so the model is free at once rather than when the lease lapses."""
    env.apply([_trigger(env, "slow", params={"pause": "60"},
                        gate={"data": "data/holdout.csv", "label": "y",
                              "rules": ["accuracy >= 0.7"]})])
    env.cli("triggers", "run", "slow")
    worker = subprocess.Popen(
        [env.bin, "triggers", "worker", "--pipelines-dir", str(env.pipelines)],
        env=dict(os.environ, MLFLOW_TRACKING_URI=env.server.url),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and env.history()[0]["state"] != "running":
            time.sleep(0.5)
        assert env.history()[0]["state"] == "running", env.history()
        time.sleep(1)
        stopped = time.monotonic()
        worker.terminate()
        worker.communicate(timeout=20)
        assert time.monotonic() - stopped < 10, "the worker waited for the pipeline"
    finally:
        if worker.poll() is None:
            worker.kill()
    last = env.history()[0]
    assert last["state"] == "failed" and "signal" in last["reason"], last
    # The model is free: the next firing is queued, not skipped.
    assert json.loads(env.cli("triggers", "run", "slow", "--json").stdout)["state"] == "queued"
