"""Evidently 0.7's DataDriftPreset on two Parquet files, as its users run it (pandas in memory):
prints one JSON line with the wall time, and each column's method, score and verdict, so
run.sh can compare them with `slipway drift --method evidently`.

    python evidently_run.py REFERENCE.parquet CURRENT.parquet
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

# How Evidently 0.7 names its tests in a report, and their registry names (`slipway drift`'s).
DISPLAY_TO_NAME = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Jensen-Shannon distance": "jensenshannon",
    "Wasserstein distance (normed)": "wasserstein",
}


def main() -> None:
    started = time.perf_counter()
    reference = pd.read_parquet(sys.argv[1])
    current = pd.read_parquet(sys.argv[2])
    read = time.perf_counter() - started
    result = Report([DataDriftPreset()]).run(current, reference).dict()
    seconds = time.perf_counter() - started
    columns, drifted = {}, None
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": DISPLAY_TO_NAME.get(config.get("method"), config.get("method")),
                "score": metric["value"],
                "threshold": config.get("threshold"),
            }
        elif config.get("type", "").endswith("DriftedColumnsCount"):
            drifted = metric["value"]["count"]
    print(json.dumps({"seconds": seconds, "read_seconds": read, "columns": columns,
                      "drifted": drifted}))


if __name__ == "__main__":
    main()
