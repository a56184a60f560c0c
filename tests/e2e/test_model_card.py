"""`slipway model-card` end to end: a version registered with the real mlflow client from a run
with a dataset input, params, metrics and a git commit, its owners and intended use set as tags,
judged by a release gate with fairness across a sensitive column, deployed with a monitoring
reference; the card in Markdown, HTML and JSON says all of it, with global feature importance
measured by permutation on the breast-cancer data (the model's own most important features
come out on top), and the console shows the same card."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from e2e_support import unique_name
from test_deployments import MLFLOW_MODEL, _require_runtime

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _cli(binary: str, url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["MLFLOW_TRACKING_URI"] = url
    result = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, f"slipway {' '.join(args)}: {result.stderr}{result.stdout}"
    return result


@pytest.fixture
def card_env(slipway_factory, slipway_bin, tmp_path):
    _require_runtime()
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag

    server = slipway_factory()
    client = MlflowClient(server.url, server.url)
    data = sklearn_datasets.load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    holdout = tmp_path / "holdout.csv"
    with holdout.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "target", "group"])
        for i, (row, label) in enumerate(zip(data.data.tolist(), data.target.tolist())):
            writer.writerow([*row, label, "a" if i % 2 else "b"])
    features_only = tmp_path / "features.csv"
    with features_only.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "target"])
        for row, label in zip(data.data.tolist(), data.target.tolist()):
            writer.writerow([*row, label])
    model = unique_name("card")
    client.create_registered_model(model, tags={"owners": "risk-ml@example.com",
                                                "intended_use": "Screen biopsies for review by a pathologist"},
                                   description="Logistic regression on 30 cell-nucleus features.")
    experiment = client.get_experiment_by_name("Default").experiment_id
    run = client.create_run(experiment, run_name="train-logreg",
                            tags={"mlflow.source.git.commit": "0123456789abcdef0123",
                                  "mlflow.source.name": "train.py"})
    rid = run.info.run_id
    client.log_param(rid, "C", "1.0")
    client.log_metric(rid, "accuracy", 0.95)
    client.log_inputs(rid, [DatasetInput(
        Dataset(name="breast-cancer", digest="d1g3st", source_type="local", source="holdout.csv"),
        [InputTag("mlflow.data.context", "training")])])
    client.log_artifacts(rid, str(MLFLOW_MODEL), "model")
    client.set_terminated(rid)
    version = client.create_model_version(model, f"runs:/{rid}/model", run_id=rid).version
    client.set_model_version_tag(model, version, "limitations",
                                 "Trained on one hospital's data; not validated elsewhere.")
    client.set_registered_model_alias(model, "production", version)
    return server, client, model, version, holdout, features_only, names


def test_the_card_says_what_was_recorded_and_measures_importance(card_env, slipway_bin, tmp_path):
    server, client, model, version, holdout, features_only, names = card_env
    url = server.url
    uri = f"models:/{model}@production"
    _cli(slipway_bin, url, "gate", uri, "--against", uri, "--data", str(holdout),
         "--label", "target", "--sensitive", "group")
    _cli(slipway_bin, url, "monitor", "reference", "create", uri, "--data", str(features_only),
         "--label", "target")
    deployment = unique_name("card")
    _cli(slipway_bin, url, "deploy", "create", deployment, "--model", uri)

    card = json.loads(_cli(slipway_bin, url, "model-card", uri, "--format", "json",
                           "--data", str(features_only), "--label", "target",
                           "--repeats", "3").stdout)
    assert (card["name"], str(card["version"]), card["aliases"]) == (model, version, ["production"])
    assert card["intended_use"].startswith("Screen biopsies")
    assert card["owners"] == "risk-ml@example.com"
    assert card["limitations"].startswith("Trained on one hospital")
    assert card["description"].startswith("Logistic regression")
    assert card["datasets"] == [{"name": "breast-cancer", "digest": "d1g3st",
                                 "context": "training", "source_type": "local"}]
    assert card["code"]["git.commit"] == "0123456789abcdef0123"
    assert card["run"]["params"] == {"C": "1.0"} and card["run"]["metrics"]["accuracy"] == 0.95
    assert card["content_digest"].startswith("sha256:")
    [gate] = card["gates"]
    assert gate["passed"] is True
    assert set(gate["fairness"]) >= {"demographic_parity_difference"}, gate
    [served] = card["deployments"]
    assert (served["name"], served["serves_as"], served["has_reference"]) == (deployment, "stable", True)

    importance = card["importance"]
    assert importance["metric"] == "accuracy" and importance["rows"] == 569
    assert importance["baseline"] > 0.9
    ranked = [f["feature"] for f in importance["features"]]
    assert sorted(ranked) == sorted(names)
    means = [f["mean"] for f in importance["features"]]
    assert means == sorted(means, reverse=True)
    # Shuffling the model's most relied-on feature costs accuracy well beyond the shuffles'
    # spread (30 correlated features share the work, so no single one costs much); the least
    # relied-on ones cost about nothing.
    top = importance["features"][0]
    assert top["mean"] > 0.005 and top["mean"] > 3 * top["std"], importance["features"][:3]
    assert abs(means[-1]) < 0.01, importance["features"][-3:]
    assert all(f["std"] >= 0 for f in importance["features"])
    # The same seed gives the same ranking.
    again = json.loads(_cli(slipway_bin, url, "model-card", uri, "--format", "json",
                            "--data", str(features_only), "--label", "target",
                            "--repeats", "3").stdout)
    assert again["importance"] == importance

    md = _cli(slipway_bin, url, "model-card", uri).stdout
    assert md.startswith(f"# Model card: {model} version {version} @production")
    for expected in ["**Intended use:** Screen biopsies", "| breast-cancer | `d1g3st` |",
                     "demographic_parity_difference", "## Monitoring", deployment,
                     "Not measured: `slipway model-card"]:
        assert expected in md, expected

    page = tmp_path / "card.html"
    _cli(slipway_bin, url, "model-card", uri, "--format", "html", "--output", str(page),
         "--data", str(features_only), "--label", "target", "--repeats", "2")
    html = page.read_text()

    class Check(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.tags = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag not in {"meta", "br", "rect", "line"}:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if tag in {"meta", "br", "rect", "line"}:
                return
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
            self.stack.pop()

    checked = Check()
    checked.feed(html)
    assert not checked.stack, checked.stack
    assert "script" not in checked.tags and checked.tags.count("svg") == 1
    assert "Screen biopsies" in html and "feature importance" in html

    # The console shows the same card.
    r = requests.get(f"{url}/models/{model}/versions/{version}/card", timeout=10)
    assert r.status_code == 200
    assert "Screen biopsies for review by a pathologist" in r.text
    assert "risk-ml@example.com" in r.text and "d1g3st" in r.text


def test_bad_input_is_refused_with_what_to_fix(card_env, slipway_bin):
    server, client, model, version, holdout, features_only, names = card_env
    missing = _cli(slipway_bin, server.url, "model-card", f"models:/{model}/{version}",
                   "--data", str(features_only), "--label", "nope", check=False)
    assert missing.returncode != 0 and "no column \"nope\" for --label" in missing.stderr
    wide = _cli(slipway_bin, server.url, "model-card", f"models:/{model}/{version}",
                "--data", str(holdout), "--label", "target", check=False)
    assert wide.returncode != 0 and "takes 30 features" in wide.stderr, wide.stderr
    unknown = _cli(slipway_bin, server.url, "model-card", f"models:/{model}/99", check=False)
    assert unknown.returncode != 0 and "99" in unknown.stderr
    alone = _cli(slipway_bin, server.url, "model-card", f"models:/{model}/{version}",
                 "--data", str(features_only), check=False)
    assert alone.returncode == 2 and "--label" in alone.stderr
