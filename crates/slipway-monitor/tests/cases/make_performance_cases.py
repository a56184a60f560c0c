"""Performance metrics checked against scikit-learn (and CBPE's definitions): writes
performance.json next to this file. Run with a Python that has numpy and scikit-learn:

    python make_performance_cases.py
"""
import json
import numpy as np
from sklearn.metrics import accuracy_score, precision_score, recall_score, f1_score, roc_auc_score, log_loss, mean_absolute_error, mean_squared_error, r2_score

rng = np.random.default_rng(3)
cases = []
# Binary: probabilities of class 1, truths drawn from them (calibrated), labels 0/1.
p1 = rng.uniform(0.02, 0.98, 200)
truth = (rng.uniform(size=200) < p1).astype(int)
pred = (p1 >= 0.5).astype(int)
probs = np.stack([1 - p1, p1], axis=1)
# CBPE expectations (NannyML's definitions): accuracy = mean(max(p,1-p)); AUC from expected TPR/FPR.
def cbpe_auc(p):
    order = np.argsort(-p, kind="stable")
    p = p[order]
    thresholds = np.unique(p)[::-1]
    tp = np.array([p[p >= t].sum() for t in thresholds])
    fp = np.array([(1 - p[p >= t]).sum() for t in thresholds])
    tpr = np.concatenate([[0], tp / p.sum()])
    fpr = np.concatenate([[0], fp / (1 - p).sum()])
    return float(np.trapezoid(tpr, fpr))
cases.append({
    "name": "binary",
    "truth": truth.tolist(), "predicted": pred.tolist(), "probabilities": probs.tolist(),
    "accuracy": accuracy_score(truth, pred), "precision": precision_score(truth, pred),
    "recall": recall_score(truth, pred), "f1": f1_score(truth, pred),
    "roc_auc": roc_auc_score(truth, p1), "log_loss": log_loss(truth, probs),
    "estimated_accuracy": float(np.maximum(p1, 1 - p1).mean()),
    "estimated_roc_auc": cbpe_auc(p1),
})
# Multiclass: 3 classes.
logits = rng.normal(size=(150, 3))
pr = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
truth = np.array([rng.choice(3, p=row) for row in pr])
pred = pr.argmax(axis=1)
cases.append({
    "name": "multiclass",
    "truth": truth.tolist(), "predicted": pred.tolist(), "probabilities": pr.tolist(),
    "accuracy": accuracy_score(truth, pred),
    "precision": precision_score(truth, pred, average="macro", zero_division=0),
    "recall": recall_score(truth, pred, average="macro", zero_division=0),
    "f1": f1_score(truth, pred, average="macro", zero_division=0),
    "roc_auc": roc_auc_score(truth, pr, multi_class="ovr", average="macro"),
    "log_loss": log_loss(truth, pr, labels=[0, 1, 2]),
    "estimated_accuracy": float(pr.max(axis=1).mean()),
    "estimated_roc_auc": float(np.mean([cbpe_auc(pr[:, k]) for k in range(3)])),
})
y = rng.normal(size=100) * 3 + 1
yhat = y + rng.normal(size=100)
cases.append({"name": "regression", "truth": y.tolist(), "predicted": yhat.tolist(),
              "mae": mean_absolute_error(y, yhat), "rmse": float(np.sqrt(mean_squared_error(y, yhat))),
              "r2": r2_score(y, yhat)})
json.dump(cases, open(__file__.replace("make_performance_cases.py", "performance.json"), "w"))
import sklearn; print("sklearn", sklearn.__version__, [ (c["name"], round(c.get("accuracy", c.get("mae")),4)) for c in cases])
