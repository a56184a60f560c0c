"""Writes the holdout set of examples/train.py as a CSV (features x0..x3 and the label
is_fraud): the reference `slipway monitor reference create` builds a version's monitoring
reference from (README, "Monitoring deployments"). Needs scikit-learn.

    python examples/fraud_reference.py --out fraud-reference.csv
"""

from __future__ import annotations

import argparse
import csv

from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the CSV file to write")
    args = parser.parse_args()
    # The same data and split as examples/train.py.
    features, labels = make_classification(
        n_samples=2000, n_features=4, n_informative=3, n_redundant=1, weights=[0.9],
        class_sep=1.5, random_state=7)
    features = features.astype("float32")
    _, x_test, _, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=7, stratify=labels)
    with open(args.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["x0", "x1", "x2", "x3", "is_fraud"])
        for row, label in zip(x_test, y_test):
            out.writerow([*(f"{v:.6f}" for v in row), int(label)])
    print(f"wrote {len(y_test)} rows to {args.out}")


if __name__ == "__main__":
    main()
