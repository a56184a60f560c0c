"""Encryption at rest end to end: a server started with a master key (`slipway keys generate`,
given as a `file:` reference) logs predictions and takes labels that are sealed in the
database, so the file holds none of the values sent; `slipway predictions export` reads them
back in clear, and the read is audited. The same store opened without the key serves
everything else and says why the log cannot be read; a rotation to a new master key re-wraps
the data keys, after which the old key is refused with what to do and the new one reads
everything."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import time

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import SlipwayServer, register_folder, unique_name
from test_deployments import MLFLOW_MODEL, ROWS, _require_runtime

pytestmark = pytest.mark.slipway_only

# A value no model input would hold by chance, to look for in the database file; exact in
# float32, as the log keeps the rows the model saw.
MARKER = 31337.5


def _cli(binary: str, *args: str, url: str | None = None, check: bool = True):
    env = dict(os.environ)
    if url:
        env["MLFLOW_TRACKING_URI"] = url
    result = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
    return result


def _key(binary: str, path) -> str:
    path.write_text(_cli(binary, "keys", "generate").stdout)
    path.chmod(0o600)
    return f"file:{path}"


def _export(binary: str, url: str, name: str) -> list[dict]:
    out = _cli(binary, "predictions", "export", name, url=url).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _assert_rows(logged: list[dict], sent: dict[str, list[float]]) -> None:
    assert {r["request_id"] for r in logged} == set(sent), logged
    for record in logged:
        assert record["inputs"] == [pytest.approx(sent[record["request_id"]], rel=1e-6)], record


def test_the_prediction_log_is_sealed_and_opens_only_with_the_key(slipway_bin, tmp_path):
    _require_runtime()
    key = _key(slipway_bin, tmp_path / "master.key")
    workdir = tmp_path / "server"
    server = SlipwayServer(slipway_bin, workdir, extra_args=["--encryption-key", key]).start()
    url = server.url
    name = unique_name("enc")
    sent: dict[str, list[float]] = {}
    try:
        client = MlflowClient(url, url)
        model = unique_name("enc-model")
        register_folder(client, model, MLFLOW_MODEL)
        _cli(slipway_bin, "deploy", "create", name, "--model", f"models:/{model}/1",
             "--log-sample", "1", url=url)
        session = requests.Session()
        for i in range(20):
            row = [MARKER + i, *ROWS[i % len(ROWS)][1:]]
            r = session.post(f"{url}/deployments/{name}/invocations", json={"inputs": [row]},
                             timeout=10)
            assert r.status_code == 200, r.text
            sent[r.headers["x-request-id"]] = row
        deadline = time.monotonic() + 15
        while len(logged := _export(slipway_bin, url, name)) < 20:
            assert time.monotonic() < deadline, logged
            time.sleep(0.2)
        # Read back in clear, as sent (in float32, as the model saw them).
        _assert_rows(logged, sent)
        assert all(r["outputs"] and "$sealed" not in json.dumps(r["outputs"]) for r in logged), \
            logged[0]
        labels = tmp_path / "labels.csv"
        with labels.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["request_id", "label"])
            for request in sent:
                writer.writerow([request, 1])
        uploaded = _cli(slipway_bin, "labels", "upload", name, str(labels), url=url)
        assert "20 match" in uploaded.stdout, uploaded.stdout
        performance = json.loads(_cli(slipway_bin, "monitor", "performance", name, "--window",
                                      "1h", "--windows", "1", "--json", url=url).stdout)
        assert performance["windows"][0]["labeled"] == 20, performance
        audit = requests.get(f"{url}/api/slipway/v1/audit",
                             params={"resource": f"deployment:{name}"}, timeout=10).json()
        actions = [e["action"] for e in audit["entries"]]
        assert "deployments.predictions.read" in actions, actions
    finally:
        server.stop()

    # In the database, every input, output and label is sealed: the values sent are nowhere
    # in its files.
    db = workdir / "slipway.db"
    with sqlite3.connect(db) as connection:
        stored = connection.execute(
            "SELECT inputs, outputs FROM prediction_log WHERE deployment = ?", (name,)).fetchall()
        stored_labels = connection.execute(
            "SELECT label FROM deployment_labels WHERE deployment = ?", (name,)).fetchall()
    assert len(stored) == 20 and len(stored_labels) == 20
    for value in [v for row in stored for v in row] + [row[0] for row in stored_labels]:
        assert json.loads(value).keys() == {"$sealed"}, value
    for path in workdir.glob("slipway.db*"):
        assert str(MARKER).encode() not in path.read_bytes(), path

    # Without the key: everything else works; the log says why it cannot be read.
    plain = SlipwayServer(slipway_bin, workdir).start()
    try:
        r = requests.post(f"{plain.url}/deployments/{name}/invocations",
                          json={"inputs": [ROWS[0]]}, timeout=10)
        assert r.status_code == 200, r.text
        assert MlflowClient(plain.url, plain.url).get_registered_model(model).name == model
        refused = _cli(slipway_bin, "predictions", "export", name, url=plain.url, check=False)
        assert refused.returncode != 0
        assert "--encryption-key" in refused.stderr, refused.stderr
        refused = _cli(slipway_bin, "labels", "upload", name, str(labels), url=plain.url,
                       check=False)
        assert refused.returncode != 0 and "--encryption-key" in refused.stderr, refused.stderr
    finally:
        plain.stop()
    # Nothing was written in clear meanwhile.
    with sqlite3.connect(db) as connection:
        clear = connection.execute(
            "SELECT COUNT(*) FROM prediction_log WHERE inputs NOT LIKE '{\"$sealed\"%'").fetchone()
    assert clear == (0,)

    # Rotation: the data keys are re-wrapped; the old key is refused, the new one reads all.
    uri = f"sqlite:///{db}"
    new_key = _key(slipway_bin, tmp_path / "master-2.key")
    rotated = _cli(slipway_bin, "keys", "rotate", "--from", key, "--to", new_key,
                   "--backend-store-uri", uri)
    assert "re-wrapped 1 data keys" in rotated.stdout, rotated.stdout
    listed = json.loads(_cli(slipway_bin, "keys", "list", "--json", "--backend-store-uri",
                             uri).stdout)
    assert len(listed["data_keys"]) == 1, listed
    with pytest.raises(RuntimeError, match="slipway keys rotate"):
        SlipwayServer(slipway_bin, workdir, extra_args=["--encryption-key", key]).start()
    rotated_server = SlipwayServer(slipway_bin, workdir,
                                   extra_args=["--encryption-key", new_key]).start()
    try:
        _assert_rows(_export(slipway_bin, rotated_server.url, name), sent)
    finally:
        rotated_server.stop()
    # A key written out on the command line is refused: it would show in `ps`.
    refused = _cli(slipway_bin, "keys", "rotate", "--from", (tmp_path / "master.key").read_text(),
                   "--to", new_key, "--backend-store-uri", uri, check=False)
    assert refused.returncode != 0 and "by reference" in refused.stderr, refused.stderr


def test_predictions_past_their_retention_are_deleted_and_audited(slipway_factory, slipway_bin):
    _require_runtime()
    server = slipway_factory()
    url = server.url
    client = MlflowClient(url, url)
    model = unique_name("ret-model")
    register_folder(client, model, MLFLOW_MODEL)
    name = unique_name("ret")
    _cli(slipway_bin, "deploy", "create", name, "--model", f"models:/{model}/1",
         "--log-sample", "1", "--prediction-retention", "3s", url=url)
    shown = json.loads(_cli(slipway_bin, "deploy", "status", name, "--json", url=url).stdout)
    assert shown["deployment"]["settings"]["prediction_retention_ms"] == 3000, shown
    for row in ROWS[:5]:
        r = requests.post(f"{url}/deployments/{name}/invocations", json={"inputs": [row]},
                          timeout=10)
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while len(_export(slipway_bin, url, name)) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # The leader's sweep (every 5 s) deletes them once they are 3 s old, and says so.
    deadline = time.monotonic() + 20
    while _export(slipway_bin, url, name):
        assert time.monotonic() < deadline, "the predictions outlived their retention"
        time.sleep(0.5)
    audit = requests.get(f"{url}/api/slipway/v1/audit",
                         params={"resource": f"deployment:{name}"}, timeout=10).json()
    expired = [e for e in audit["entries"] if e["action"] == "deployments.predictions.expire"]
    assert sum(e["summary"]["predictions"] for e in expired) == 5, expired
    assert all(e["summary"]["retention_ms"] == 3000 for e in expired), expired
    refused = _cli(slipway_bin, "deploy", "update", name, "--prediction-retention", "10ms",
                   url=url, check=False)
    assert refused.returncode != 0 and "at least 1s" in refused.stderr, refused.stderr
