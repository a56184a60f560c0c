"""Import and export throughput: an MLflow server (the `mlflow` package, SQLite store, served
artifacts) filled with the mlflow client, then `slipway import mlflow` into a fresh slipway
store, timed; then the same import again (everything there already: what a resumed or repeated
import costs); then the same data imported straight from MLflow's database and artifact folder
into another fresh store; then `slipway export mlflow` of the first store into a second, empty
MLflow server.

    python bench/import/run.py --bin target/release/slipway [--runs 200] [--steps 1000]

Runs the e2e venv's python (tests/e2e/requirements.txt: mlflow, requests). Prints JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(work: Path, name: str) -> tuple[subprocess.Popen, str]:
    """MLflow's own server on a SQLite file and an artifact folder under `work`, answering."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{work / f'{name}.db'}",
         "--artifacts-destination", str(work / f"{name}-artifacts"), "--workers", "2"],
        stdout=open(work / f"{name}.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--metrics", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slipway-import-bench-"))
    mlflow, url = start_mlflow(work, "mlflow")
    try:
        client = MlflowClient(url, url)
        experiment = client.create_experiment("bench")
        artifact = work / "artifact.txt"
        artifact.write_text("x" * 10_000)
        filled = time.perf_counter()
        for r in range(args.runs):
            run = client.create_run(experiment, run_name=f"run-{r}")
            run_id = run.info.run_id
            client.log_batch(run_id, params=[Param(f"p{i}", str(i)) for i in range(20)],
                             tags=[RunTag(f"t{i}", str(i)) for i in range(10)])
            points = [Metric(f"m{k}", s * 0.1, 1_700_000_000_000 + s, s)
                      for k in range(args.metrics) for s in range(args.steps)]
            for i in range(0, len(points), 1000):
                client.log_batch(run_id, metrics=points[i:i + 1000])
            client.log_artifact(run_id, str(artifact))
            client.set_terminated(run_id, "FINISHED")
        fill_seconds = time.perf_counter() - filled
        store = f"sqlite:///{work / 'slipway' / 'slipway.db'}"
        command = [args.bin, "import", "mlflow", "--from", url, "--backend-store-uri", store,
                   "--artifacts-destination", str(work / "slipway" / "artifacts"), "--json"]
        timings = []
        results = []
        for _ in range(2):
            began = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True)
            timings.append(time.perf_counter() - began)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            results.append(json.loads(out.stdout))
        # Straight from MLflow's database and artifact folder, into a fresh store.
        direct_store = f"sqlite:///{work / 'direct' / 'slipway.db'}"
        began = time.perf_counter()
        out = subprocess.run(
            [args.bin, "import", "mlflow", "--from", f"sqlite:///{work / 'mlflow.db'}",
             "--artifacts", str(work / "mlflow-artifacts"), "--backend-store-uri", direct_store,
             "--artifacts-destination", str(work / "direct" / "artifacts"), "--json"],
            capture_output=True, text=True)
        direct_seconds = time.perf_counter() - began
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        direct = json.loads(out.stdout)
        # And out again, into an empty MLflow server.
        target, out_url = start_mlflow(work, "out")
        try:
            began = time.perf_counter()
            out = subprocess.run(
                [args.bin, "export", "mlflow", "--to", out_url,
                 "--backend-store-uri", store, "--artifacts-destination",
                 str(work / "slipway" / "artifacts"), "--json"],
                capture_output=True, text=True)
            export_seconds = time.perf_counter() - began
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            exported = json.loads(out.stdout)
        finally:
            target.terminate()
            target.wait()
        counts = results[0]["imported"]
        print(json.dumps({
            "runs": counts["runs"],
            "metric_points": counts["metric_points"],
            "params": counts["params"],
            "artifacts": counts["artifacts"],
            "mlflow_fill_seconds": round(fill_seconds, 1),
            "import_seconds": round(timings[0], 2),
            "runs_per_second": round(counts["runs"] / timings[0], 1),
            "metric_points_per_second": round(counts["metric_points"] / timings[0]),
            "matches": results[0]["matches"],
            "second_import_seconds": round(timings[1], 2),
            "second_import_runs_skipped": results[1]["runs_already_whole"],
            "database_import_seconds": round(direct_seconds, 2),
            "database_import_matches": direct["matches"],
            "database_import_metric_points_per_second": round(counts["metric_points"] / direct_seconds),
            "export_seconds": round(export_seconds, 2),
            "export_matches": exported["matches"],
            "export_metric_points_per_second": round(counts["metric_points"] / export_seconds),
        }, indent=2))
    finally:
        mlflow.terminate()
        mlflow.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
