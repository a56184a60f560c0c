"""Crash durability: SIGKILL the server in the middle of log-batch ingestion, restart it on the
same SQLite database, and check that every acknowledged batch survived and that no batch was
half-written."""

import threading
import time
from collections import defaultdict

import pytest
import requests

from e2e_support import metric_history, now_ms, unique_name

pytestmark = pytest.mark.slipway_only

N_THREADS = 8
BATCH = 100            # metrics per log-batch request, distinct steps
MAX_BATCHES = 5_000    # per thread (bounds the loop)
RUN_BEFORE_KILL = 2.0  # seconds of ingestion before SIGKILL


def _value(batch_idx: int, j: int) -> float:
    return batch_idx * 1000.0 + j / 8.0


def test_sigkill_mid_ingest_keeps_acknowledged_batches(slipway_factory, tmp_path):
    workdir = tmp_path / "server"
    srv = slipway_factory(workdir=workdir)
    base = srv.url
    api = f"{base}/api/2.0/mlflow"

    exp_id = requests.post(f"{api}/experiments/create",
                           json={"name": unique_name("durability")}, timeout=30).json()["experiment_id"]
    run_ids = []
    for i in range(N_THREADS):
        r = requests.post(f"{api}/runs/create", json={"experiment_id": exp_id,
                                                      "start_time": now_ms(), "run_name": f"w{i}"},
                          timeout=30)
        assert r.status_code == 200, r.text
        run_ids.append(r.json()["run"]["info"]["run_id"])

    acked = defaultdict(set)      # thread -> batch indices answered 200
    sent = defaultdict(set)       # thread -> batch indices sent (answer or not)
    bad = []                      # non-200 answers received (before the crash)
    stop = threading.Event()
    ts = now_ms()

    def writer(t: int):
        s = requests.Session()
        for b in range(MAX_BATCHES):
            if stop.is_set():
                return
            metrics = [{"key": "m", "value": _value(b, j), "timestamp": ts + b, "step": b * BATCH + j}
                       for j in range(BATCH)]
            sent[t].add(b)
            try:
                r = s.post(f"{api}/runs/log-batch", json={"run_id": run_ids[t], "metrics": metrics},
                           timeout=30)
            except requests.RequestException:
                return  # server gone
            if r.status_code == 200:
                acked[t].add(b)
            else:
                bad.append((t, b, r.status_code, r.text[:300]))
                return

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    time.sleep(RUN_BEFORE_KILL)
    srv.kill()
    stop.set()
    for th in threads:
        th.join(timeout=60)
        assert not th.is_alive()

    assert not bad, f"non-200 answers before the crash: {bad[:5]}"
    total_acked = sum(len(v) for v in acked.values())
    assert total_acked >= N_THREADS, f"too few batches acknowledged to be meaningful: {total_acked}"

    srv2 = slipway_factory(workdir=workdir)  # same SQLite file, new process
    for t in range(N_THREADS):
        hist = metric_history(srv2.url, run_ids[t], "m")
        by_batch = defaultdict(list)
        for p in hist:
            by_batch[int(p["step"]) // BATCH].append(p)
        present = set(by_batch)
        missing_acked = acked[t] - present
        assert not missing_acked, f"thread {t}: acknowledged batches lost after SIGKILL: {sorted(missing_acked)[:10]}"
        assert present <= sent[t], f"thread {t}: batches that were never sent: {sorted(present - sent[t])[:10]}"
        for b, pts in by_batch.items():
            steps = sorted(int(p["step"]) for p in pts)
            assert steps == list(range(b * BATCH, (b + 1) * BATCH)), \
                f"thread {t}: batch {b} half-written ({len(steps)} of {BATCH} points)"
            for p in pts:
                assert float(p["value"]) == _value(b, int(p["step"]) - b * BATCH)
        # The run itself is readable and its latest value is the last stored point.
        r = requests.get(f"{srv2.url}/api/2.0/mlflow/runs/get", params={"run_id": run_ids[t]}, timeout=30)
        assert r.status_code == 200, r.text
        if present:
            last_b = max(present)
            latest = {m["key"]: m for m in r.json()["run"]["data"].get("metrics", [])}
            assert int(latest["m"]["step"]) == last_b * BATCH + BATCH - 1
