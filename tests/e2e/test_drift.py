"""`slipway drift REFERENCE CURRENT` as a user runs it: files written by pandas (CSV) and pyarrow
(Parquet), the binary's exit code, its JSON, text and HTML reports, and its numbers against
scipy's, computed here independently.

The engine's own tests (crates/slipway-monitor) check every statistic against scipy and
Evidently 0.7 on generated cases; these check that the command reads files the way pandas
does and carries the engine's verdicts to the user. No server: it runs once, in the SQLite
pass of scripts/test.sh.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

scipy_stats = pytest.importorskip("scipy.stats")

pytestmark = [
    pytest.mark.slipway_only,
    pytest.mark.skipif(bool(os.environ.get("E2E_BACKEND_STORE_URI")),
                       reason="no server, so the PostgreSQL pass would only repeat it"),
]


def drift(slipway_bin, *args) -> subprocess.CompletedProcess:
    return subprocess.run([slipway_bin, "drift", *map(str, args)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def frames(n_ref: int, n_cur: int, shift: float, seed: int = 7):
    rng = np.random.default_rng(seed)

    def frame(n, delta):
        return pd.DataFrame({
            "num_a": rng.normal(0.0 + delta, 1.0, n),
            "num_b": rng.exponential(2.0, n) + delta,
            "num_c": rng.integers(0, 4, n),  # int with 4 values: Evidently infers categorical
            "cat": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "flag": rng.random(n) < 0.3,
            "stable": rng.normal(5.0, 2.0, n),
        })

    return frame(n_ref, 0.0), frame(n_cur, shift)


def write(tmp_path, name, frame, kind):
    path = tmp_path / f"{name}.{kind}"
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_no_drift_exits_0_and_a_shift_exits_1_with_the_shifted_columns(slipway_bin, tmp_path, kind):
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    ref, cur = frames(2000, 2000, 0.0)
    same = drift(slipway_bin, write(tmp_path, "ref", ref, kind), write(tmp_path, "same", cur, kind),
                 "--format", "json")
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["dataset"]["dataset_drift"] is False
    assert report["dataset"]["columns"] == 6
    assert {c["name"] for c in report["columns"]} == set(ref.columns)
    for column in report["columns"]:
        for key in ("name", "type", "n_reference", "n_current", "method", "score", "threshold",
                    "drift_detected"):
            assert key in column, (key, column)
        assert column["n_reference"] == 2000 and column["n_current"] == 2000

    _, shifted = frames(2000, 2000, 1.0, seed=8)
    shifted["cat"] = np.where(np.arange(2000) % 2 == 0, "red", shifted["cat"])
    moved = drift(slipway_bin, tmp_path / f"ref.{kind}", write(tmp_path, "moved", shifted, kind),
                  "--format", "json")
    assert moved.returncode == 1, moved.stderr
    report = json.loads(moved.stdout)
    drifted = {c["name"] for c in report["columns"] if c["drift_detected"]}
    assert {"num_a", "num_b", "cat"} <= drifted, report
    assert "stable" not in drifted and "flag" not in drifted
    assert report["dataset"]["dataset_drift"] is True


def test_evidently_mode_scores_are_scipys(slipway_bin, tmp_path):
    # Small reference (<= 1000 rows): K-S p-values; large: normed Wasserstein distances.
    small_ref, small_cur = frames(800, 600, 0.1, seed=11)
    result = drift(slipway_bin, write(tmp_path, "small_ref", small_ref, "csv"),
                   write(tmp_path, "small_cur", small_cur, "csv"), "--method", "evidently",
                   "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    columns = {c["name"]: c for c in json.loads(result.stdout)["columns"]}
    for name in ("num_a", "num_b", "stable"):
        expected = scipy_stats.ks_2samp(small_ref[name], small_cur[name]).pvalue
        assert columns[name]["method"] == "ks"
        assert columns[name]["score"] == pytest.approx(expected, rel=1e-6)
        assert columns[name]["drift_detected"] == (expected <= 0.05)
    # An int column of 4 values is categorical to Evidently: chi-square below 1000 rows.
    assert columns["num_c"]["type"] == "categorical"
    assert columns["num_c"]["method"] == "chisquare"
    assert columns["flag"]["method"] == "z"

    big_ref, big_cur = frames(5000, 4000, 0.05, seed=12)
    result = drift(slipway_bin, write(tmp_path, "big_ref", big_ref, "csv"),
                   write(tmp_path, "big_cur", big_cur, "csv"), "--method", "evidently",
                   "--format", "json")
    columns = {c["name"]: c for c in json.loads(result.stdout)["columns"]}
    for name in ("num_a", "num_b", "stable"):
        expected = (scipy_stats.wasserstein_distance(big_ref[name], big_cur[name])
                    / max(np.std(big_ref[name]), 0.001))
        assert columns[name]["method"] == "wasserstein"
        assert columns[name]["score"] == pytest.approx(expected, rel=1e-6)
    assert columns["cat"]["method"] == "jensenshannon"


def test_a_forced_stattest_and_declared_types(slipway_bin, tmp_path):
    ref, cur = frames(1500, 1500, 0.3, seed=3)
    result = drift(slipway_bin, write(tmp_path, "ref", ref, "csv"), write(tmp_path, "cur", cur, "csv"),
                   "--stattest", "psi", "--threshold", "0.2", "--numerical", "num_c",
                   "--columns", "num_a,num_c", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    columns = json.loads(result.stdout)["columns"]
    assert [c["name"] for c in columns] == ["num_a", "num_c"]
    assert all(c["method"] == "psi" and c["threshold"] == 0.2 for c in columns)
    assert columns[1]["type"] == "numerical"


def test_text_and_html_reports(slipway_bin, tmp_path):
    ref, cur = frames(1000, 1000, 1.0, seed=5)
    ref_path, cur_path = write(tmp_path, "ref", ref, "csv"), write(tmp_path, "cur", cur, "csv")
    # Two of the six columns move: no dataset drift at the default share (half), drift at 0.3.
    text = drift(slipway_bin, ref_path, cur_path)
    assert text.returncode == 0, text.stderr
    assert "no dataset drift: 2 of 6 tested columns drifted" in text.stdout
    text = drift(slipway_bin, ref_path, cur_path, "--drift-share", "0.3")
    assert text.returncode == 1
    assert "DATASET DRIFT" in text.stdout and "num_a" in text.stdout
    out = tmp_path / "report.html"
    html = drift(slipway_bin, ref_path, cur_path, "--format", "html", "-o", out, "--drift-share", "0.3")
    assert html.returncode == 1 and html.stdout == ""
    page = out.read_text()
    assert page.count("<svg") == 6
    # One self-contained file: no script, stylesheet or image fetched from anywhere.
    assert "src=" not in page and "<link" not in page and "http" not in page


def test_bad_input_exits_2_and_says_what_to_fix(slipway_bin, tmp_path):
    ref, cur = frames(100, 100, 0.0)
    ref_path = write(tmp_path, "ref", ref, "csv")
    missing = drift(slipway_bin, ref_path, tmp_path / "nope.csv")
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
    other = write(tmp_path, "other", cur.rename(columns={"cat": "colour"}), "csv")
    differs = drift(slipway_bin, ref_path, other)
    assert differs.returncode == 2
    assert "only in the reference: cat" in differs.stderr and "colour" in differs.stderr
    unknown = drift(slipway_bin, ref_path, ref_path, "--stattest", "nonsense")
    assert unknown.returncode == 2 and "wasserstein" in unknown.stderr
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    broken = drift(slipway_bin, ragged, ragged)
    assert broken.returncode == 2 and "row 3" in broken.stderr
    twice = tmp_path / "twice.csv"
    twice.write_text("a,b,a\n1,2,3\n")
    named_twice = drift(slipway_bin, twice, twice)
    assert named_twice.returncode == 2 and "two columns are named \"a\"" in named_twice.stderr
    unknown_format = tmp_path / "data.xlsx"
    unknown_format.write_text("x")
    fmt = drift(slipway_bin, unknown_format, unknown_format)
    assert fmt.returncode == 2 and ".csv or .parquet" in fmt.stderr
