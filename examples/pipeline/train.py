"""Trains a logistic regression on the prepared transactions and logs it with the mlflow
client into the run slipway opened for the step (MLFLOW_RUN_ID): the second step of
examples/pipeline/pipeline.yml."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    table = np.loadtxt(args.data, delimiter=",", skiprows=1)
    x, y = table[:, :4], table[:, 4].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    model = LogisticRegression(C=args.c).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    # Inside `slipway pipeline run`, start_run() resumes the step's run (MLFLOW_RUN_ID);
    # run on its own, it starts a new one.
    with mlflow.start_run():
        mlflow.log_param("C", args.c)
        mlflow.log_metric("auc", auc)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(json.dumps({
        "coef": model.coef_.tolist(), "intercept": model.intercept_.tolist(), "auc": auc,
    }, indent=2))
    print(f"auc {auc:.4f}")


if __name__ == "__main__":
    main()
