"""Writes a labeled batch of customer rows (four features, `churned` label) as CSV: what lands in
the pipeline's data/raw/ folder. `--shift` moves every feature (the world changed), `--flip`
corrupts that share of the labels (a bad labeling vendor). The labels follow the same rule
whatever the shift, so a model trained on shifted data learns the shifted world."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--flip", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x = rng.normal(loc=args.shift, scale=1.0, size=(args.rows, 4))
    # Churn rises with tenure-weighted usage relative to where the population is.
    centred = x - args.shift
    score = 1.5 * centred[:, 0] - 1.0 * centred[:, 1] + 0.8 * centred[:, 2] * centred[:, 3]
    y = (score + rng.normal(scale=0.5, size=args.rows) > 0).astype(int)
    flip = rng.random(args.rows) < args.flip
    y[flip] = 1 - y[flip]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tenure", "usage", "support_calls", "discount", "churned"])
        for row, label in zip(x, y):
            writer.writerow([f"{v:.5f}" for v in row] + [int(label)])


if __name__ == "__main__":
    main()
