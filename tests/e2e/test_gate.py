"""`slipway gate` with real models: the breast-cancer classifier against a candidate that
always predicts one class fails the default rules, the classifier against itself passes, each
rule explained with its numbers; fairness across a sensitive column is measured; the server runs
the gate and records it as a run, a gate record and tags on the candidate version, which no
client may write; a policy that requires a gate counts only the server's, judged by its rules
against today's champion; bad input exits 2."""

from __future__ import annotations

import csv
import json
import os
import subprocess

import pytest

from mlflow.exceptions import MlflowException
from test_deployments import _constant_model, _require_runtime
from test_monitoring import Env

pytestmark = pytest.mark.slipway_only


@pytest.fixture
def env(slipway_factory, slipway_bin, tmp_path):
    _require_runtime()
    return Env(slipway_factory(), slipway_bin, tmp_path)


def _gate(env, *args: str) -> tuple[int, dict | str, str]:
    command = [env.bin, "gate", *args]
    result = subprocess.run(command, env=dict(os.environ, MLFLOW_TRACKING_URI=env.server.url),
                            capture_output=True, text=True, timeout=120)
    out = result.stdout
    if "--json" in args and out.strip():
        out = json.loads(out)
    return result.returncode, out, result.stderr


def test_a_worse_candidate_fails_and_an_equal_one_passes(env, tmp_path):
    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")
    # Version 2: a model that answers class 1 whatever the row.
    experiment = env.client.get_experiment_by_name("Default").experiment_id
    run = env.client.create_run(experiment)
    env.client.log_artifacts(run.info.run_id, str(_constant_model(tmp_path / "constant")),
                             "model")
    worse = env.client.create_model_version(
        env.model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
    champion = f"models:/{env.model}/{env.version}"
    candidate = f"models:/{env.model}/{worse}"

    code, report, stderr = _gate(env, candidate, "--data", str(env.reference), "--label",
                                 "target", "--against", champion, "--json")
    assert code == 1, stderr
    assert report["passed"] is False
    by_rule = {r["rule"]: r for r in report["rules"]}
    f1 = by_rule["f1 >= champion - 0.01"]
    assert not f1["passed"] and f1["champion"] > 0.9 and f1["candidate"] < f1["champion"]
    assert "the champion's f1 is" in f1["explanation"]
    assert report["candidate"]["metrics"]["latency_p99_ms"] > 0
    assert report["candidate"]["metrics"]["throughput_rows_per_s"] > 0
    # Version 2 has no monitoring reference: no data checks among its default rules.
    assert not any("share" in r for r in by_rule), list(by_rule)
    versions = {v.version: v for v in env.client.search_model_versions(f"name='{env.model}'")}
    assert versions[worse].tags["slipway.gate.status"] == "failed"
    gate_run = env.client.get_run(versions[worse].tags["slipway.gate.run_id"])
    assert gate_run.data.params["champion"].startswith(champion)
    assert gate_run.data.params["data"].startswith("runs:/")
    assert gate_run.data.metrics["f1"] == pytest.approx(f1["candidate"])
    assert report["gate"]["id"] == int(versions[worse].tags["slipway.gate.id"])
    assert report["gate"]["rules_source"] == "default"
    # The server ran it on the holdout it was sent, uploaded as an artifact: its digest is kept.
    assert len(report["gate"]["data_sha256"]) == 64

    code, text, stderr = _gate(env, champion, "--data", str(env.reference), "--label", "target",
                               "--against", champion)
    assert code == 0, text + stderr
    assert "gate PASSED" in text and "f1 >= champion - 0.01" in text, text
    # Version 1 has a reference, and the holdout is its own data: nothing out of its range.
    assert "out_of_range_share 0.0000 is within <= 0.0500" in text, text
    tags = env.client.get_model_version(env.model, env.version).tags
    assert tags["slipway.gate.status"] == "passed"


def test_fairness_rules_and_bad_input(env, tmp_path):
    holdout = tmp_path / "holdout.csv"
    with env.reference.open() as f, holdout.open("w", newline="") as out:
        reader = csv.reader(f)
        writer = csv.writer(out)
        header = next(reader)
        writer.writerow([*header, "group"])
        for i, row in enumerate(reader):
            writer.writerow([*row, "a" if i % 2 else "b"])
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - accuracy >= 0.9\n  - disparate_impact_ratio >= 0.8\n")
    model = f"models:/{env.model}/{env.version}"
    code, report, stderr = _gate(env, model, "--data", str(env.reference), "--label", "target",
                                 "--rules", str(rules), "--local", "--json")
    # Without --sensitive, fairness is not measured, and a rule on it fails saying so.
    assert code == 1, stderr
    fairness_rule = next(r for r in report["rules"] if r["metric"] == "disparate_impact_ratio")
    assert "not measured" in fairness_rule["explanation"]

    code, _, stderr = _gate(env, model, "--data", str(env.reference), "--label", "nope")
    assert code == 2 and "nope" in stderr, stderr
    code, _, stderr = _gate(env, model, "--data", str(env.reference), "--label", "target",
                            "--rules", str(tmp_path / "missing.yml"))
    assert code == 2 and "missing.yml" in stderr, stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - speed >= 1\n")
    code, _, stderr = _gate(env, model, "--data", str(env.reference), "--label", "target",
                            "--rules", str(bad))
    assert code == 2 and "unknown metric 'speed'" in stderr, stderr
    # With the sensitive column: measured across its groups (not a model input), and judged.
    code, report, stderr = _gate(env, model, "--data", str(holdout), "--label", "target",
                                 "--sensitive", "group", "--rules", str(rules),
                                 "--json")
    metrics = report["candidate"]["metrics"]
    assert 0 <= metrics["demographic_parity_difference"] < 0.2, metrics
    assert 0 <= metrics["equal_opportunity_difference"] <= 1, metrics
    ratio = next(r for r in report["rules"] if r["metric"] == "disparate_impact_ratio")
    assert ratio["candidate"] == pytest.approx(metrics["disparate_impact_ratio"])
    assert code == (0 if report["passed"] else 1) and ratio["passed"] == (ratio["candidate"] >= 0.8)
    # A holdout with a column the model does not take, and no --sensitive to leave it out.
    code, _, stderr = _gate(env, model, "--data", str(holdout), "--label", "target",
                            "--local")
    assert code == 2 and "takes 30 features" in stderr, stderr


def _promote_checks(env, version: str) -> dict:
    result = env.cli("promote", "request", env.model, version, "--to", "production", "--json")
    return json.loads(result.stdout)["checks"]


def test_gate_records_cannot_be_forged_and_a_policy_counts_only_its_own(env, tmp_path):
    env.cli("monitor", "reference", "create", f"models:/{env.model}/{env.version}",
            "--data", str(env.reference), "--label", "target")
    good = f"models:/{env.model}/{env.version}"
    # No client writes a gate's tags: not on a version, not when registering one.
    with pytest.raises(MlflowException, match="release gates"):
        env.client.set_model_version_tag(env.model, env.version, "slipway.gate.status", "passed")
    with pytest.raises(MlflowException, match="release gates"):
        env.client.delete_model_version_tag(env.model, env.version, "slipway.gate.id")
    experiment = env.client.get_experiment_by_name("Default").experiment_id
    run = env.client.create_run(experiment)
    env.client.log_artifacts(run.info.run_id, str(_constant_model(tmp_path / "constant")),
                             "model")
    with pytest.raises(MlflowException, match="release gates"):
        env.client.create_model_version(env.model, f"runs:/{run.info.run_id}/model",
                                        run_id=run.info.run_id,
                                        tags={"slipway.gate.status": "passed"})
    worse = env.client.create_model_version(
        env.model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version

    env.cli("policy", "set", env.model, "--aliases", "production", "--require-gate")
    checks = _promote_checks(env, env.version)
    assert checks["passed"] is False and "has no release gate" in checks["detail"], checks

    # A gate judged by rules the editor chose does not count.
    lax = tmp_path / "lax.yml"
    lax.write_text("rules:\n  - accuracy >= 0\n")
    code, _, stderr = _gate(env, good, "--data", str(env.reference), "--label", "target",
                            "--rules", str(lax))
    assert code == 0, stderr
    checks = _promote_checks(env, env.version)
    assert checks["passed"] is False and "rules given with the request" in checks["detail"]

    # The default rules (no champion yet: the holdout against the reference) count.
    code, text, stderr = _gate(env, good, "--data", str(env.reference), "--label", "target")
    assert code == 0, text + stderr
    checks = _promote_checks(env, env.version)
    assert checks["passed"] is True and "passed" in checks["detail"], checks

    # Once version 1 holds production, a candidate must be gated against it: the default
    # champion. The constant model fails, and its failed gate is what the policy sees.
    env.cli("policy", "delete", env.model)
    env.client.set_registered_model_alias(env.model, "production", env.version)
    env.cli("policy", "set", env.model, "--aliases", "production", "--require-gate")
    code, report, stderr = _gate(env, f"models:/{env.model}/{worse}", "--data",
                                 str(env.reference), "--label", "target", "--json")
    assert code == 1, stderr
    assert report["gate"]["champion_version"] == int(env.version)
    checks = _promote_checks(env, worse)
    assert checks["passed"] is False and "failed" in checks["detail"], checks

    lineage = json.loads(env.cli("lineage", f"models:/{env.model}/{worse}", "--json").stdout)
    assert [g["status"] for g in lineage["gates"]] == ["failed"]
    text = env.cli("lineage", f"models:/{env.model}/{env.version}").stdout
    assert "gate" in text and "passed" in text and "request rules" in text, text

    # A pinned holdout: gates on anything else do not count.
    holdout_uri = report["gate"]["data"]
    env.cli("policy", "set", env.model, "--aliases", "production", "--require-gate",
            "--gate-data", holdout_uri)
    policy = json.loads(env.cli("policy", "show", env.model).stdout)
    assert len(policy["gate_data_sha256"]) == 64
    code, report, stderr = _gate(env, f"models:/{env.model}/{worse}", "--label", "target",
                                 "--json")
    assert code == 1, stderr
    assert report["gate"]["data"] == holdout_uri
