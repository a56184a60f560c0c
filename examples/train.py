"""Trains a small fraud classifier and registers it in the model registry as `fraud`.

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python examples/train.py [--c 0.05]

The data is synthetic (scikit-learn's make_classification: four numeric features, one
transaction in ten fraudulent), so the example needs only scikit-learn, skops (mlflow.sklearn's
default format) and the mlflow client: `pip install mlflow-skinny scikit-learn skops`.
Each run registers a new version, logged the way data scientists do, with mlflow.sklearn;
`slipway models convert` turns a version into the ONNX model that slipway serves. The run
records the holdout AUC and a `validation` tag, which a promotion policy can check
(`slipway policy set fraud --checks "metrics.auc >= 0.9 and tags.validation = 'passed'"`).
"""

from __future__ import annotations

import argparse

import mlflow
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--c", type=float, default=1.0,
                        help="inverse regularisation strength of the logistic regression")
    parser.add_argument("--name", default="fraud", help="registered model name")
    parser.add_argument("--experiment", default="fraud", help="experiment to log the run in")
    args = parser.parse_args()

    # The same data on every run, so versions differ only by what the arguments change.
    features, labels = make_classification(
        n_samples=2000, n_features=4, n_informative=3, n_redundant=1, weights=[0.9],
        class_sep=1.5, random_state=7)
    features = features.astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=7, stratify=labels)

    mlflow.set_experiment(args.experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({"model": "logistic_regression", "C": args.c})
        model = make_pipeline(StandardScaler(), LogisticRegression(C=args.c))
        model.fit(x_train, y_train)
        auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
        mlflow.log_metric("auc", auc)
        mlflow.set_tag("validation", "passed" if auc >= 0.9 else "failed")
        # The input example becomes the signature and the rows `slipway models convert`
        # checks the ONNX model on.
        info = mlflow.sklearn.log_model(model, name="model", input_example=x_test[:5],
                                        registered_model_name=args.name)
    print(f"run {run.info.run_id}: auc {auc:.3f}, registered "
          f"models:/{args.name}/{info.registered_model_version}")


if __name__ == "__main__":
    main()
