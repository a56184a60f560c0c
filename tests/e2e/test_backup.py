"""`slipway backup` and `slipway restore` on SQLite and (in the PostgreSQL pass) PostgreSQL, with
the backup kept in a folder or (in the PostgreSQL pass, when the suite runs against moto's S3) an
S3 bucket.

Recovery point: a client logs metrics one request at a time while a backup is taken; the
restored store holds every value acknowledged before the backup began. The restored store is
served by a new server: runs, metric histories, artifacts byte for byte, a registered model and
its alias all there, and the audit chain intact. Backups are incremental by content: a second
one writes no artifact contents it already holds. Restores refuse a non-empty target and a
damaged backup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import SlipwayServer, unique_name

pytestmark = pytest.mark.slipway_only


def _cli(slipway_bin: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([slipway_bin, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
    return result


class Ingest:
    """Logs metric `v` with value and step i, one request each, keeping when each was
    acknowledged."""

    def __init__(self, url: str, run_id: str):
        self.url = url
        self.run_id = run_id
        self.acked: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        i = 0
        while not self.stop.is_set():
            r = session.post(f"{self.url}/api/2.0/mlflow/runs/log-batch", json={
                "run_id": self.run_id,
                "metrics": [{"key": "v", "value": i, "timestamp": 1_000 + i, "step": i}],
            }, timeout=10)
            assert r.status_code == 200, r.text
            self.acked.append((i, time.time()))
            i += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=15)


def _destination(kind: str, tmp_path: Path) -> str:
    if kind == "s3":
        bucket = os.environ["E2E_ARTIFACTS_DESTINATION"].removeprefix("s3://").split("/")[0]
        return f"s3://{bucket}/backups-{uuid.uuid4().hex[:8]}"
    return str(tmp_path / "backups")


def _stores(backend: str, tmp_path: Path, fresh_postgres, name: str) -> tuple[str, str]:
    if backend == "postgresql":
        return fresh_postgres(), str(tmp_path / name / "artifacts")
    return f"sqlite:///{tmp_path / name / 'slipway.db'}", str(tmp_path / name / "artifacts")


def _cases():
    cases = [("sqlite", "folder")]
    if os.environ.get("E2E_BACKEND_STORE_URI", "").startswith("postgresql://"):
        s3 = os.environ.get("E2E_ARTIFACTS_DESTINATION", "").startswith("s3://")
        cases = [("postgresql", "s3" if s3 else "folder")]
    return cases


@pytest.mark.parametrize("backend,destination_kind", _cases())
def test_a_backup_during_ingest_restores_everything_acknowledged_before_it(
        slipway_bin, tmp_path, fresh_postgres_optional, backend, destination_kind):
    metadata, artifacts = _stores(backend, tmp_path, fresh_postgres_optional, "source")
    server = SlipwayServer(slipway_bin, tmp_path / "source", backend_store_uri=metadata,
                           artifacts_destination=artifacts).start()
    restored_server = None
    try:
        client = MlflowClient(server.url, server.url)
        experiment = client.create_experiment(unique_name("bk"))
        run = client.create_run(experiment)
        run_id = run.info.run_id
        client.log_param(run_id, "lr", "0.1")
        payload = tmp_path / "payload.bin"
        payload.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
        client.log_artifact(run_id, str(payload), "data")
        client.log_artifact(run_id, str(payload), "copy")  # the same content twice
        model = unique_name("bkm")
        client.create_registered_model(model)
        client.create_model_version(model, f"runs:/{run_id}/data", run_id=run_id)
        client.set_registered_model_alias(model, "production", "1")

        destination = _destination(destination_kind, tmp_path)
        backup_args = ["backup", "--to", destination, "--backend-store-uri", metadata,
                       "--artifacts-destination", artifacts, "--json"]
        with Ingest(server.url, run_id) as ingest:
            while len(ingest.acked) < 50:
                time.sleep(0.01)
            began = time.time()
            first = json.loads(_cli(slipway_bin, *backup_args).stdout)
            time.sleep(0.2)  # ingest goes on after the backup too
        acked_before = {i for i, at in ingest.acked if at < began}
        assert len(acked_before) >= 50
        assert first["artifacts"] == 2 and first["new_blobs"] == 1, first

        # Incremental: nothing new, nothing written; one new content, one blob.
        second = json.loads(_cli(slipway_bin, *backup_args).stdout)
        assert second["new_blobs"] == 0 and second["new_blob_bytes"] == 0, second
        extra = tmp_path / "extra.txt"
        extra.write_text("one more")
        client.log_artifact(run_id, str(extra))
        third = json.loads(_cli(slipway_bin, *backup_args).stdout)
        assert third["new_blobs"] == 1 and third["new_blob_bytes"] == len("one more"), third

        listed = json.loads(_cli(slipway_bin, "restore", "--from", destination, "--list",
                                 "--json").stdout)["backups"]
        assert [b["id"] for b in listed] == sorted([first["id"], second["id"], third["id"]])

        # Restore the first backup into a new store and serve it.
        target_metadata, target_artifacts = _stores(backend, tmp_path, fresh_postgres_optional,
                                                    "restored")
        restored = json.loads(_cli(
            slipway_bin, "restore", "--from", destination, "--backup", first["id"],
            "--backend-store-uri", target_metadata, "--artifacts-destination", target_artifacts,
            "--json").stdout)
        assert restored["artifacts"] == 2
        assert restored["audit_entries_checked"] > 0
        verified = _cli(slipway_bin, "audit", "verify", "--backend-store-uri", target_metadata)
        assert "intact" in verified.stdout

        restored_server = SlipwayServer(slipway_bin, tmp_path / "restored",
                                        backend_store_uri=target_metadata,
                                        artifacts_destination=target_artifacts).start()
        again = MlflowClient(restored_server.url, restored_server.url)
        history = again.get_metric_history(run_id, "v")
        present = {int(m.value) for m in history}
        missing = sorted(acked_before - present)
        assert not missing, f"{len(missing)} acknowledged values lost, first {missing[:5]}"
        print(f"{backend}: {len(acked_before)} values acknowledged before the backup began, "
              f"all restored; {len(present) - len(acked_before)} more logged while it ran")
        assert again.get_run(run_id).data.params == {"lr": "0.1"}
        for folder in ("data", "copy"):
            fetched = again.download_artifacts(run_id, f"{folder}/payload.bin",
                                               str(tmp_path / f"dl-{folder}"))
            assert Path(fetched).read_bytes() == payload.read_bytes()
        assert again.get_model_version_by_alias(model, "production").version == "1"
        # The third backup's extra artifact is not in the first.
        names = {a.path for a in again.list_artifacts(run_id)}
        assert "extra.txt" not in names
        restored_server.stop()

        # A restore refuses a target that is not empty...
        refused = _cli(slipway_bin, "restore", "--from", destination,
                       "--backend-store-uri", target_metadata,
                       "--artifacts-destination", target_artifacts, check=False)
        assert refused.returncode != 0
        assert "not empty" in refused.stderr or "exists" in refused.stderr, refused.stderr
    finally:
        server.stop()
        if restored_server:
            restored_server.stop()


def test_a_damaged_backup_is_refused(slipway_bin, tmp_path):
    metadata = f"sqlite:///{tmp_path / 'source' / 'slipway.db'}"
    artifacts = str(tmp_path / "source" / "artifacts")
    server = SlipwayServer(slipway_bin, tmp_path / "source", backend_store_uri=metadata,
                           artifacts_destination=artifacts).start()
    try:
        client = MlflowClient(server.url, server.url)
        run = client.create_run(client.create_experiment(unique_name("bk")))
        payload = tmp_path / "p.txt"
        payload.write_text("precious")
        client.log_artifact(run.info.run_id, str(payload))
    finally:
        server.stop()
    destination = tmp_path / "backups"
    _cli(slipway_bin, "backup", "--to", str(destination), "--backend-store-uri", metadata,
         "--artifacts-destination", artifacts)
    (blob,) = list((destination / "blobs" / "sha256").iterdir())
    blob.write_text("tampered")
    refused = _cli(slipway_bin, "restore", "--from", str(destination),
                   "--backend-store-uri", f"sqlite:///{tmp_path / 'r' / 'slipway.db'}",
                   "--artifacts-destination", str(tmp_path / "r" / "artifacts"), check=False)
    assert refused.returncode != 0
    assert "damaged" in refused.stderr, refused.stderr
    # Nothing half-restored: the metadata goes in last, so no store was made.
    assert not (tmp_path / "r" / "slipway.db").exists()
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
