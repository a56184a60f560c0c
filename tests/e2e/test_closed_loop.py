"""examples/closed-loop/run.sh, as a user runs it: one command that trains and deploys v1, drifts
the traffic until monitoring alerts, retrains, gates and promotes v2 through a canary, then has
the gate refuse a retrain on corrupted labels; in under three minutes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_deployments import _require_runtime

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

ROOT = Path(__file__).resolve().parents[2]


def test_the_closed_loop_example_runs_end_to_end(slipway_bin, tmp_path):
    _require_runtime()
    pytest.importorskip("skl2onnx")
    env = dict(os.environ, SLIPWAY_BIN=slipway_bin, CLOSED_LOOP_PYTHON=sys.executable,
               CLOSED_LOOP_WORK=str(tmp_path / "work"))
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    result = subprocess.run([str(ROOT / "examples/closed-loop/run.sh")], env=env,
                            capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 0, out + (tmp_path / "work/worker.log").read_text()
    assert elapsed < 180, f"the closed loop took {elapsed:.0f} s\n{out}"
    lines = out.splitlines()
    drift = [line for line in lines if "churn-drift" in line and "-> promoted" in line]
    assert drift and "alert ChurnDrift" in drift[-1] and "gate 2 passed" in drift[-1], out
    assert "churn version 2" in drift[-1] and "rollout 1 on churn" in drift[-1], out
    relabel = [line for line in lines if "churn-relabel" in line and "gate failed" in line]
    assert relabel and "the gate refused it" in relabel[-1], out
    assert "production stays on version 2" in out, out
    # The lineage of what serves names the gate that let it through.
    assert "gate 2 passed against version 1" in out, out
    assert "made by #2 churn-drift" in out and "alert ChurnDrift" in out, out
