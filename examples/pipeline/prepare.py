"""Writes synthetic transactions (four numeric features, one in ten fraudulent) as CSV: the
first step of examples/pipeline/pipeline.yml."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sklearn.datasets import make_classification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    x, y = make_classification(n_samples=args.rows, n_features=4, n_informative=3,
                               n_redundant=0, weights=[0.9], random_state=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["f0", "f1", "f2", "f3", "is_fraud"])
        for features, label in zip(x, y):
            writer.writerow([f"{v:.6f}" for v in features] + [int(label)])


if __name__ == "__main__":
    main()
