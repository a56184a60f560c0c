"""How fast the console's pages answer with 100,000 runs in the store.

Starts `slipway server` on a fresh SQLite store (or `--backend-store-uri postgresql://...`),
fills one experiment with N runs (each with 3 params, 3 metrics and a tag, through the REST API
as clients would: create-run + log-batch, several at once), then requests every page of the
console K times over loopback and prints each page's median, p95 and max. Loopback client time
is the server's time plus a fraction of a millisecond, so it bounds the server-side time from
above.

    python bench/console/run.py --runs 100000 [--binary target/release/slipway] [--json OUT]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(url: str, experiment: str, runs: int, workers: int) -> list[str]:
    session_local = {}

    def session():
        import threading

        key = threading.get_ident()
        if key not in session_local:
            s = requests.Session()
            s.trust_env = False
            session_local[key] = s
        return session_local[key]

    def one(i: int) -> str:
        s = session()
        rng = random.Random(i)
        r = s.post(f"{url}/api/2.0/mlflow/runs/create", json={
            "experiment_id": experiment, "run_name": f"run-{i}",
            "start_time": 1_764_000_000_000 + i * 1000}, timeout=30)
        r.raise_for_status()
        run_id = r.json()["run"]["info"]["run_id"]
        t = 1_764_000_000_000 + i * 1000
        batch = {
            "run_id": run_id,
            "params": [{"key": "learning_rate", "value": str(rng.choice([0.1, 0.05, 0.01]))},
                       {"key": "max_depth", "value": str(rng.randint(2, 12))},
                       {"key": "model", "value": rng.choice(["gbt", "forest", "logreg"])}],
            "metrics": [{"key": "auc", "value": rng.random(), "timestamp": t, "step": 0},
                        {"key": "f1", "value": rng.random(), "timestamp": t, "step": 0},
                        {"key": "loss", "value": rng.random() * 3, "timestamp": t, "step": 0}],
            "tags": [{"key": "team", "value": rng.choice(["risk", "growth"])}],
        }
        s.post(f"{url}/api/2.0/mlflow/runs/log-batch", json=batch, timeout=30).raise_for_status()
        return run_id

    ids = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for n, run_id in enumerate(pool.map(one, range(runs)), start=1):
            ids.append(run_id)
            if n % 10_000 == 0:
                rate = n / (time.monotonic() - started)
                print(f"  {n:,} runs ({rate:,.0f} runs/s)", file=sys.stderr)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "slipway"))
    parser.add_argument("--backend-store-uri")
    parser.add_argument("--json")
    parser.add_argument("--keep", help="keep the filled store in this folder (made if missing)")
    args = parser.parse_args()

    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="slipway-console-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = args.backend_store_uri or f"sqlite:///{work / 'slipway.db'}"
    server = subprocess.Popen(
        [args.binary, "server", "--port", str(port), "--backend-store-uri", store,
         "--artifacts-destination", str(work / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        api = requests.Session()
        api.trust_env = False
        found = api.get(f"{url}/api/2.0/mlflow/experiments/get-by-name",
                        params={"experiment_name": "bench"}, timeout=10)
        if found.ok:
            # A store kept by an earlier --keep run: measure it again without filling.
            experiment = found.json()["experiment"]["experiment_id"]
            ids = [r["info"]["run_id"] for r in api.post(
                f"{url}/api/2.0/mlflow/runs/search",
                json={"experiment_ids": [experiment], "max_results": 1000},
                timeout=60).json()["runs"]]
            fill_s = float("nan")
            print(f"reusing experiment {experiment} of {work}", file=sys.stderr)
        else:
            experiment = api.post(f"{url}/api/2.0/mlflow/experiments/create",
                                  json={"name": "bench"}, timeout=10).json()["experiment_id"]
            print(f"filling experiment {experiment} with {args.runs:,} runs", file=sys.stderr)
            started = time.monotonic()
            ids = fill(url, experiment, args.runs, args.workers)
            fill_s = time.monotonic() - started
        compare = ",".join(ids[:5])
        pages = {
            "overview /": "/",
            "experiments": "/experiments",
            "runs table (newest 50)": f"/experiments/{experiment}",
            "runs table, filter + sort by a metric":
                f"/experiments/{experiment}?filter=metrics.auc%20%3E%200.9%20and%20params.model%20%3D%20%27gbt%27&order=metrics.f1%20DESC",
            "runs table, unselective filter + sort by a metric":
                f"/experiments/{experiment}?filter=metrics.auc%20%3E%200.1&order=metrics.f1%20DESC",
            "runs table, sort by a metric": f"/experiments/{experiment}?order=metrics.loss%20ASC",
            "runs table, sort by a param": f"/experiments/{experiment}?order=params.max_depth%20ASC",
            "runs table, sort by a tag": f"/experiments/{experiment}?order=tags.team%20DESC",
            "runs table, chosen columns":
                f"/experiments/{experiment}?columns=metrics.auc,params.model,tags.team",
            "run page": f"/runs/{ids[len(ids) // 2]}",
            "run metric history JSON": f"/runs/{ids[0]}/metrics.json?keys=auc,f1,loss",
            "compare 5 runs": f"/compare?runs={compare}",
            "registry": "/models",
            "promotions": "/promotions",
            "deployments": "/deployments",
            "alerts": "/alerts",
            "audit (newest 100)": "/audit",
            "delivery": "/delivery",
        }
        browser = requests.Session()
        browser.trust_env = False
        results = {}
        for name, path in pages.items():
            times = []
            for _ in range(args.repeat + 1):
                t0 = time.perf_counter()
                r = browser.get(url + path, timeout=60)
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:300]}")
                times.append(elapsed)
            times = sorted(times[1:])  # the first warms the caches
            results[name] = {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
                "max_ms": round(times[-1], 2),
                "bytes": len(r.content),
            }
        width = max(map(len, results))
        print(f"\n{args.runs:,} runs filled in {fill_s:.0f} s ({args.runs / fill_s:,.0f} runs/s); "
              f"{args.repeat} requests per page over loopback ({store.split(':')[0]}):")
        print(f"{'page':<{width}}  median    p95      max")
        for name, r in results.items():
            print(f"{name:<{width}}  {r['median_ms']:6.1f}  {r['p95_ms']:6.1f}  {r['max_ms']:7.1f} ms")
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": args.runs, "fill_s": fill_s,
                                                   "pages": results}, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=20)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
