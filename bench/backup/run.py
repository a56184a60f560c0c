"""Backup and restore of ~1 GB (metadata and artifacts): the recovery point under ingest, and the
time to back up and to restore (the recovery time).

    python bench/backup/run.py --bin target/release/slipway [--postgres postgresql://...] \
        [--artifacts-mb 900] [--metric-points 2000000]

A server on a fresh store is filled through its REST API (metric histories for the metadata,
random files for the artifacts). Then, while a client keeps logging one metric value per request,
`slipway backup` copies it to a folder; the restored copy is checked for every value acknowledged
before the backup began (the recovery point). `slipway restore` into an empty store is timed
(the recovery time, audit chain check included), and so is a second, incremental backup.
Prints a JSON summary. Needs the e2e venv's `requests` (tests/e2e/requirements.txt)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, metadata: str, artifacts: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([binary, "server", "--port", str(port), "--backend-store-uri", metadata,
                             "--artifacts-destination", artifacts],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(cmd: list[str]) -> tuple[float, dict]:
    began = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - began
    if out.returncode != 0:
        raise SystemExit(f"{cmd[1]} failed: {out.stderr}")
    return took, json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--postgres", help="an admin URL; fresh databases are made beside it")
    parser.add_argument("--artifacts-mb", type=int, default=900)
    parser.add_argument("--metric-points", type=int, default=2_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slipway-backup-bench-"))
    databases: list[str] = []

    def store(name: str) -> str:
        if not args.postgres:
            return f"sqlite:///{work / name / 'slipway.db'}"
        import psycopg
        db = f"slipway_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        databases.append(db)
        return args.postgres.rsplit("/", 1)[0].replace("postgres://", "postgresql://") + f"/{db}"

    try:
        metadata, artifacts = store("source"), str(work / "source" / "artifacts")
        proc, url = start(args.bin, metadata, artifacts, work / "server.log")
        session = requests.Session()
        experiment = session.post(f"{url}/api/2.0/mlflow/experiments/create",
                                  json={"name": "bench"}).json()["experiment_id"]

        def new_run() -> str:
            return session.post(f"{url}/api/2.0/mlflow/runs/create",
                                json={"experiment_id": experiment}).json()["run"]["info"]["run_id"]

        filled = time.perf_counter()
        run_id = new_run()
        for start_step in range(0, args.metric_points, 1000):
            metrics = [{"key": f"m{start_step % 7}", "value": i * 0.5, "timestamp": i, "step": i}
                       for i in range(start_step, start_step + 1000)]
            r = session.post(f"{url}/api/2.0/mlflow/runs/log-batch",
                             json={"run_id": run_id, "metrics": metrics})
            r.raise_for_status()
        chunk = 50 * 1024 * 1024
        for i in range(max(1, args.artifacts_mb // 50)):
            r = session.put(f"{url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}"
                            f"/artifacts/blob-{i}.bin", data=os.urandom(chunk))
            r.raise_for_status()
        fill_seconds = time.perf_counter() - filled

        # The recovery point: a backup while a client logs one value per request.
        ingest_run = new_run()
        acked: list[tuple[int, float]] = []
        stop = threading.Event()

        def ingest():
            s = requests.Session()
            i = 0
            while not stop.is_set():
                s.post(f"{url}/api/2.0/mlflow/runs/log-batch", json={
                    "run_id": ingest_run,
                    "metrics": [{"key": "v", "value": i, "timestamp": i, "step": i}],
                }).raise_for_status()
                acked.append((i, time.time()))
                i += 1

        thread = threading.Thread(target=ingest, daemon=True)
        thread.start()
        time.sleep(1)
        began = time.time()
        destination = str(work / "backups")
        backup_seconds, first = run([args.bin, "backup", "--to", destination, "--backend-store-uri",
                                     metadata, "--artifacts-destination", artifacts, "--json"])
        stop.set()
        thread.join()
        incremental_seconds, second = run([args.bin, "backup", "--to", destination,
                                           "--backend-store-uri", metadata,
                                           "--artifacts-destination", artifacts, "--json"])
        proc.terminate()
        proc.wait()

        target, target_artifacts = store("restored"), str(work / "restored" / "artifacts")
        restore_seconds, restored = run([args.bin, "restore", "--from", destination, "--backup",
                                         first["id"], "--backend-store-uri", target,
                                         "--artifacts-destination", target_artifacts, "--json"])
        proc, url = start(args.bin, target, target_artifacts, work / "restored.log")
        points = []
        token = None
        while True:
            params = {"run_id": ingest_run, "metric_key": "v", "max_results": 25000}
            if token:
                params["page_token"] = token
            page = requests.get(f"{url}/api/2.0/mlflow/metrics/get-history", params=params).json()
            points.extend(int(m["value"]) for m in page.get("metrics", []))
            token = page.get("next_page_token")
            if not token:
                break
        proc.terminate()
        proc.wait()
        before = {i for i, at in acked if at < began}
        lost = sorted(before - set(points))
        summary = {
            "backend": "postgresql" if args.postgres else "sqlite",
            "metric_points": args.metric_points,
            "metadata_bytes": first["metadata"]["bytes"],
            "artifact_bytes": first["artifact_bytes"],
            "total_gb": round((first["metadata"]["bytes"] + first["artifact_bytes"]) / 1e9, 3),
            "fill_seconds": round(fill_seconds, 1),
            "backup_seconds": round(backup_seconds, 2),
            "incremental_backup_seconds": round(incremental_seconds, 2),
            "incremental_new_blobs": second["new_blobs"],
            "restore_seconds": round(restore_seconds, 2),
            "acknowledged_before_backup": len(before),
            "lost": len(lost),
            "logged_during_backup": len(acked) - len(before),
            "restored_source_store_bytes": du(work / "restored") if not args.postgres else None,
        }
        print(json.dumps(summary, indent=2))
        if lost:
            sys.exit(f"{len(lost)} acknowledged values lost")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if databases:
            import psycopg
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for db in databases:
                    conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
