"""A registered version's files are immutable: the real mlflow client cannot overwrite them
through the artifact proxy, the digest tag is the server's, lineage shows the manifest, and
`slipway serve` refuses files changed behind the server's back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from e2e_support import free_port, unique_name
from test_deployments import _require_runtime

pytestmark = pytest.mark.slipway_only

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "mlflow_logreg_breast_cancer"


def test_a_registered_versions_files_cannot_change(slipway_factory, slipway_bin, tmp_path):
    server = slipway_factory(tmp_path / "server")
    client = MlflowClient(server.url, server.url)
    experiment = client.create_experiment(unique_name("content"))
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_artifacts(run_id, str(FIXTURE), "model")
    name = unique_name("immutable")
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    digest = version.tags.get("slipway.content_digest", "")
    assert digest.startswith("sha256:"), version.tags

    # The editor's overwrite of the approved model.onnx is refused; other paths of the run work.
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not the approved model")
    with pytest.raises(Exception) as refused:
        client.log_artifact(run_id, str(bad), "model")
    assert "403" in str(refused.value) or "may not change" in str(refused.value), refused.value
    client.log_artifact(run_id, str(bad), "scratch")
    with pytest.raises(MlflowException):
        client.set_model_version_tag(name, version.version, "slipway.content_digest", "sha256:00")
    assert client.get_model_version(name, version.version).tags["slipway.content_digest"] == digest

    lineage = subprocess.run(
        [slipway_bin, "lineage", f"models:/{name}/{version.version}", "--tracking-uri", server.url],
        capture_output=True, text=True, timeout=60)
    assert lineage.returncode == 0, lineage.stderr
    assert digest in lineage.stdout and "model.onnx" in lineage.stdout, lineage.stdout

    _require_runtime()  # the serve half needs ONNX Runtime
    # Behind the server's back (a shared disk, a bucket): slipway serve refuses the file.
    stored = [p for p in server.artifacts.rglob("model.onnx") if run_id in str(p) and "/model/" in str(p)]
    assert len(stored) == 1, stored
    stored[0].write_bytes(b"swapped after approval")
    served = subprocess.run(
        [slipway_bin, "serve", "-m", f"models:/{name}/{version.version}",
         "--tracking-uri", server.url, "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert served.returncode != 0, served.stdout
    assert "changed since the version was registered" in served.stderr, served.stderr
