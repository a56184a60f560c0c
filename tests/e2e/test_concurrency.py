"""32 concurrent writers against a SQLite-backed server: no 5xx, no 'database is locked', and
everything acknowledged is read back."""

import threading
import time
from collections import defaultdict

import pytest
import requests

from e2e_support import metric_history, now_ms, search_all_runs, unique_name

pytestmark = pytest.mark.slipway_only

N_WRITERS = 32
DURATION = 4.0        # seconds of mixed writes
MAX_OPS = 400         # per writer (bounds the loop)


def test_32_concurrent_writers_sqlite(slipway_factory):
    srv = slipway_factory()
    api = f"{srv.url}/api/2.0/mlflow"
    exp_id = requests.post(f"{api}/experiments/create", json={"name": unique_name("concurrency")},
                           timeout=30).json()["experiment_id"]

    problems = []                                  # (writer, op, status, body)
    run_of = {}                                    # writer -> its run id
    created = defaultdict(list)                    # writer -> extra runs created (acked)
    acked_batch_points = defaultdict(int)          # writer -> points acked for key "b"
    acked_single_points = defaultdict(int)         # writer -> points acked for key "s"
    acked_tags = defaultdict(dict)
    acked_params = defaultdict(dict)
    ops_done = defaultdict(int)
    start_barrier = threading.Barrier(N_WRITERS)
    deadline_holder = {}

    def check(w, op, r):
        body = r.text
        if r.status_code >= 500 or "database is locked" in body.lower():
            problems.append((w, op, r.status_code, body[:300]))
            return False
        if r.status_code != 200:
            problems.append((w, op, r.status_code, body[:300]))
            return False
        return True

    def writer(w: int):
        s = requests.Session()
        try:
            r = s.post(f"{api}/runs/create", json={"experiment_id": exp_id, "start_time": now_ms(),
                                                   "run_name": f"writer-{w}"}, timeout=60)
            if not check(w, "create-run", r):
                return
            run_id = r.json()["run"]["info"]["run_id"]
            run_of[w] = run_id
            start_barrier.wait(timeout=60)
            deadline = deadline_holder.setdefault("t", time.monotonic() + DURATION)
            step_b = 0
            step_s = 0
            for i in range(MAX_OPS):
                if time.monotonic() > deadline:
                    break
                kind = i % 5
                ts = now_ms()
                if kind == 0:
                    metrics = [{"key": "b", "value": float(step_b + j), "timestamp": ts,
                                "step": step_b + j} for j in range(10)]
                    r = s.post(f"{api}/runs/log-batch", json={"run_id": run_id, "metrics": metrics,
                                                              "tags": [{"key": f"bt{i}", "value": "x"}]},
                               timeout=60)
                    if check(w, "log-batch", r):
                        acked_batch_points[w] += 10
                        acked_tags[w][f"bt{i}"] = "x"
                    step_b += 10
                elif kind == 1:
                    r = s.post(f"{api}/runs/log-metric", json={"run_id": run_id, "key": "s",
                                                               "value": float(i), "timestamp": ts,
                                                               "step": step_s}, timeout=60)
                    if check(w, "log-metric", r):
                        acked_single_points[w] += 1
                    step_s += 1
                elif kind == 2:
                    r = s.post(f"{api}/runs/set-tag", json={"run_id": run_id, "key": f"t{i}",
                                                            "value": f"v{i}"}, timeout=60)
                    if check(w, "set-tag", r):
                        acked_tags[w][f"t{i}"] = f"v{i}"
                elif kind == 3:
                    r = s.post(f"{api}/runs/log-parameter", json={"run_id": run_id, "key": f"p{i}",
                                                                  "value": str(i)}, timeout=60)
                    if check(w, "log-param", r):
                        acked_params[w][f"p{i}"] = str(i)
                else:
                    r = s.post(f"{api}/runs/create", json={"experiment_id": exp_id,
                                                           "start_time": ts,
                                                           "run_name": f"extra-{w}-{i}"}, timeout=60)
                    if check(w, "create-run", r):
                        created[w].append(r.json()["run"]["info"]["run_id"])
                ops_done[w] += 1
        except requests.RequestException as e:
            problems.append((w, "request", None, repr(e)))
        except threading.BrokenBarrierError:
            problems.append((w, "barrier", None, "a writer failed before starting"))

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(N_WRITERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
        assert not th.is_alive(), "a writer hung"

    assert not problems, f"{len(problems)} failed requests, e.g. {problems[:5]}"
    assert len(run_of) == N_WRITERS
    assert sum(ops_done.values()) >= N_WRITERS * 5, "writers did too little to be meaningful"

    for w, run_id in run_of.items():
        r = requests.get(f"{api}/runs/get", params={"run_id": run_id}, timeout=60)
        assert r.status_code == 200, r.text
        data = r.json()["run"]["data"]
        params = {p["key"]: p["value"] for p in data.get("params", [])}
        tags = {t["key"]: t["value"] for t in data.get("tags", [])}
        assert params == acked_params[w], f"writer {w}: params differ"
        for k, v in acked_tags[w].items():
            assert tags.get(k) == v, f"writer {w}: tag {k} missing"
        assert len(metric_history(srv.url, run_id, "b")) == acked_batch_points[w], f"writer {w}"
        assert len(metric_history(srv.url, run_id, "s")) == acked_single_points[w], f"writer {w}"

    runs = search_all_runs(srv.url, exp_id)
    expected = set(run_of.values()) | {rid for ids in created.values() for rid in ids}
    assert {r["info"]["run_id"] for r in runs} == expected
