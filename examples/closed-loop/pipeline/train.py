"""Trains a classifier on data/train.csv and writes it as ONNX (model/): a logistic regression
on the features and their pairwise products (churn depends on an interaction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

table = np.loadtxt("data/train.csv", delimiter=",", skiprows=1)
x, y = table[:, :4].astype(np.float32), table[:, 4].astype(np.int64)
model = make_pipeline(PolynomialFeatures(degree=2), StandardScaler(),
                      LogisticRegression(max_iter=1000)).fit(x, y)
onx = to_onnx(model, x[:1], options={"zipmap": False}, target_opset=17)
Path("model").mkdir(exist_ok=True)
Path("model/model.onnx").write_bytes(onx.SerializeToString())
print(f"trained on {len(y)} rows, training accuracy {model.score(x, y):.3f}")
