"""Writes two samples of the same features for `slipway drift` (README, "Drift between two
datasets"): reference.csv, and current.csv in which `amount` has moved up by 10 (most of a standard
deviation) and the countries' shares have changed. Only numpy and the standard library.

    python examples/drift_data.py --out DIR [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def write(path: Path, rows: int, rng: np.random.Generator, drifted: bool) -> None:
    amount = rng.lognormal(3.0, 0.5, rows) + (10.0 if drifted else 0.0)
    age = rng.integers(18, 90, rows)
    weights = [0.3, 0.3, 0.2, 0.2] if drifted else [0.5, 0.25, 0.15, 0.1]
    country = rng.choice(["FR", "DE", "US", "JP"], rows, p=weights)
    new_device = rng.random(rows) < 0.2
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["amount", "age", "country", "new_device"])
        for row in zip(amount, age, country, new_device):
            out.writerow([f"{row[0]:.6f}", int(row[1]), row[2], bool(row[3])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    write(args.out / "reference.csv", args.rows, rng, drifted=False)
    write(args.out / "current.csv", args.rows, rng, drifted=True)


if __name__ == "__main__":
    main()
