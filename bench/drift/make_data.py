"""Writes the drift benchmark's datasets: ROWS x COLS numeric columns, a reference and a current
sample in which a third of the columns have shifted, as Parquet (snappy, pandas' default) and,
with --csv, as CSV. Seeded, so every run compares the same numbers.

    python make_data.py --rows 1000000 --cols 20 --out DIR [--csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def frame(rows: int, cols: int, rng: np.random.Generator, shifted: bool) -> pd.DataFrame:
    data = {}
    for c in range(cols):
        # Normal, exponential and uniform columns; every third shifts in the current sample.
        delta = 0.1 if shifted and c % 3 == 0 else 0.0
        if c % 3 == 0:
            values = rng.normal(delta, 1.0, rows)
        elif c % 3 == 1:
            values = rng.exponential(1.0, rows) + delta
        else:
            values = rng.uniform(0.0, 1.0, rows) + delta
        data[f"f{c:02d}"] = values
    return pd.DataFrame(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--csv", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261205)
    for name, shifted in (("reference", False), ("current", True)):
        df = frame(args.rows, args.cols, rng, shifted)
        df.to_parquet(args.out / f"{name}.parquet", index=False)
        if args.csv:
            df.to_csv(args.out / f"{name}.csv", index=False)


if __name__ == "__main__":
    main()
