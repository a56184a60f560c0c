"""The Prometheus alerting rules slipway ships (deploy/prometheus/slipway-alerts.yml) load, pass
their promtool unit tests, read only documented metrics, and link to runbooks that exist. The
recording rules beside them do the same, and the Grafana dashboard (deploy/grafana/slipway.json)
draws only recorded series and documented metrics, with queries promtool accepts.

* ``promtool check rules`` and ``promtool test rules`` run on the committed files from the
  repository root, as a user runs them; promtool's output is printed on a failure.
* Without ``promtool`` on PATH the two promtool tests are skipped with the reason, except under
  ``CI=true``, where they fail: CI must run them (Debian and Ubuntu ship promtool in the
  ``prometheus`` package; Prometheus' release tarballs carry it too).
* Every ``slipway_*`` metric a rule reads (in its expression or an annotation's query) is listed
  in docs/specs/metrics.md (a histogram's ``_bucket``, ``_sum`` and ``_count`` series by the
  histogram's name), and every alert has a ``runbook_url`` whose anchor is a heading of
  docs/runbooks.md.

No server: it runs once, in the SQLite pass of scripts/test.sh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = Path("deploy/prometheus/slipway-alerts.yml")
RULE_TESTS = Path("deploy/prometheus/slipway-alerts.test.yml")
METRICS_DOC = REPO / "docs" / "specs" / "metrics.md"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_PREFIX = "https://github.com/slipway-mlops/slipway/blob/main/docs/runbooks.md#"

pytestmark = [
    pytest.mark.slipway_only,
    pytest.mark.skipif(bool(os.environ.get("E2E_BACKEND_STORE_URI")),
                       reason="no server, so the PostgreSQL pass would only repeat it"),
]


@pytest.fixture(autouse=True)
def _client_env():
    """Overrides conftest's: these tests need no tracking server, so none is started."""
    yield


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = ("promtool is not on PATH: install Prometheus' promtool (Debian/Ubuntu: "
                  "apt-get install prometheus) to check deploy/prometheus/slipway-alerts.yml")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}; CI must run the alerting rules' tests",
                        pytrace=False)
        pytest.skip(reason)
    return path


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run([promtool, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")


def test_rules_file_is_valid(promtool):
    run_promtool(promtool, "check", "rules", str(RULES))


def test_rules_unit_tests_pass(promtool):
    run_promtool(promtool, "test", "rules", str(RULE_TESTS))


def rules_in(path: Path, kind: str) -> list[dict]:
    """Every rule of a rules file, each checked to be of `kind` (alert or record)."""
    yaml = pytest.importorskip("yaml")
    document = yaml.safe_load((REPO / path).read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules and all(kind in rule for rule in rules), f"expected {kind} rules only in {path}"
    return rules


def alert_rules() -> list[dict]:
    return rules_in(RULES, "alert")


def documented_metrics() -> set[str]:
    """Metric names in the tables of docs/specs/metrics.md (a row's first cell)."""
    return set(re.findall(r"^\| `(slipway_[a-z0-9_]+)` \|", METRICS_DOC.read_text(), re.M))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lowercase, punctuation dropped, spaces as -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_rules_read_only_documented_metrics():
    documented = documented_metrics()
    assert "slipway_serving_deployment_requests_total" in documented, "metrics.md parsed wrong"
    unknown = {}
    for rule in alert_rules():
        # The expression, and the queries annotations run (an effect size in a description).
        text = "\n".join([rule["expr"], *rule.get("annotations", {}).values()])
        for name in sorted(set(re.findall(r"slipway_[a-z0-9_]+", text))):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in documented and base not in documented:
                unknown.setdefault(rule["alert"], []).append(name)
    assert not unknown, f"metrics not in docs/specs/metrics.md: {unknown}"


def test_every_alert_links_to_its_runbook_section():
    text = re.sub(r"^```.*?^```", "", RUNBOOKS.read_text(), flags=re.M | re.S)  # not code
    headings = re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M)
    anchors = {github_anchor(h) for h in headings}
    problems = []
    names = []
    for rule in alert_rules():
        name = rule["alert"]
        names.append(name)
        if not re.fullmatch(r"Slipway[A-Z][A-Za-z0-9]*", name):
            problems.append(f"{name}: not a CamelCase name starting with Slipway")
        severity = rule.get("labels", {}).get("severity")
        if severity not in ("warning", "critical"):
            problems.append(f"{name}: severity {severity!r}, expected warning or critical")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key} annotation")
        url = annotations.get("runbook_url", "")
        if not url.startswith(RUNBOOK_PREFIX):
            problems.append(f"{name}: runbook_url {url!r} does not start with {RUNBOOK_PREFIX}")
            continue
        anchor = url[len(RUNBOOK_PREFIX):]
        if anchor != name.lower():
            problems.append(f"{name}: runbook anchor #{anchor}, expected #{name.lower()}")
        if anchor not in anchors:
            problems.append(f"{name}: docs/runbooks.md has no heading with the anchor #{anchor}")
    assert len(names) == len(set(names)), f"an alert name is used twice: {sorted(names)}"
    assert not problems, "\n".join(problems)


RECORDING = Path("deploy/prometheus/slipway-recording.yml")
RECORDING_TESTS = Path("deploy/prometheus/slipway-recording.test.yml")
DASHBOARD = REPO / "deploy" / "grafana" / "slipway.json"


def test_recording_rules_are_valid_and_pass_their_unit_tests(promtool):
    run_promtool(promtool, "check", "rules", str(RECORDING))
    run_promtool(promtool, "test", "rules", str(RECORDING_TESTS))


def recording_rules() -> list[dict]:
    return rules_in(RECORDING, "record")


def undocumented(text: str, documented: set[str]) -> list[str]:
    """slipway_* metrics `text` reads that docs/specs/metrics.md does not list (recorded
    series, level:metric:operation, are not metrics of slipway's own)."""
    bare = re.sub(r"[a-z_]+:slipway_[a-z0-9_]+:[a-z0-9_]+", "", text)
    return sorted({name for name in re.findall(r"slipway_[a-z0-9_]+", bare)
                   if name not in documented
                   and re.sub(r"_(bucket|sum|count)$", "", name) not in documented})


def test_recording_rules_read_only_documented_metrics():
    documented = documented_metrics()
    names = []
    for rule in recording_rules():
        assert re.fullmatch(r"[a-z]+:slipway_[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule
        assert not undocumented(rule["expr"], documented), (rule["record"], rule["expr"])
        names.append(rule["record"])
    assert len(names) == len(set(names)), names


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def test_dashboard_draws_recorded_or_documented_series_only():
    dashboard = json.loads(DASHBOARD.read_text())
    recorded = {rule["record"] for rule in recording_rules()}
    documented = documented_metrics()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "deployment"} <= variables, variables
    used = set()
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        # Every panel asks the Prometheus the viewer picked, never a fixed one.
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            series = set(re.findall(r"[a-z_]+:slipway_[a-z0-9_]+:[a-z0-9_]+", target["expr"]))
            assert series <= recorded, (panel["title"], series - recorded)
            used |= series
            assert not undocumented(target["expr"], documented), (panel["title"], target["expr"])
    # No recording rule is computed for nothing.
    assert used == recorded, recorded - used


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """Each panel's query, its variables filled in, checked by promtool as a rule would be."""
    yaml = pytest.importorskip("yaml")
    rules = [{"record": f"slipway_dashboard:panel_{i}:check",
              "expr": expr.replace("$deployment", ".*")}
             for i, (_, expr) in enumerate(dashboard_targets())]
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(checked)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout
