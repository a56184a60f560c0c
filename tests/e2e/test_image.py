"""`slipway image build`: an OCI archive written without Docker, checked with Debian's skopeo
(inspect: the image's configuration and layers as a registry client reads them) and umoci (the
layout unpacked to a root filesystem), then the unpacked image run: its own dynamic loader and
libraries start its slipway binary, and a baked-in registered model is served from the image's
files and answers as the fixture recorded. Two builds of the same inputs have one digest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import free_port, unique_name, wait_ready
from test_deployments import _require_runtime

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MLFLOW_MODEL = MODELS / "mlflow_logreg_breast_cancer"
EXAMPLE = json.loads((MLFLOW_MODEL / "serving_input_example.json").read_text())


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {name} is missing (scripts/test.sh installs Debian's {name})")
    pytest.skip(f"needs {name} (apt-get install {name})")


def _build(slipway_bin: str, output: Path, *extra: str, env: dict | None = None) -> dict:
    result = subprocess.run(
        [slipway_bin, "image", "build", "--output", str(output), "--json", *extra],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "ORT_DYLIB_PATH": _require_runtime(), **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _unpack(archive: Path, where: Path, tag: str) -> Path:
    """The archive's layout on disk, unpacked by umoci into a bundle; returns its rootfs."""
    layout = where / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    bundle = where / "bundle"
    result = subprocess.run([_tool("umoci"), "unpack", "--rootless", "--image",
                             f"{layout}:{tag}", str(bundle)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return bundle / "rootfs"


def _in_image(rootfs: Path, *args: str) -> list[str]:
    """Runs the image's slipway with the image's loader and libraries, none of this machine's."""
    loader = rootfs / "lib64" / "ld-linux-x86-64.so.2"
    libraries = sorted({str(p.parent) for p in rootfs.rglob("*.so*") if p.is_file()})
    return [str(loader), "--inhibit-cache", "--library-path", ":".join(libraries),
            str(rootfs / "usr" / "local" / "bin" / "slipway"), *args]


def test_an_image_without_a_model_is_valid_and_runs(slipway_bin, tmp_path):
    skopeo = _tool("skopeo")
    archive = tmp_path / "slipway.tar"
    built = _build(slipway_bin, archive, "--tag", "v1")
    assert [layer["what"] for layer in built["layers"]] == [
        "system libraries", "onnxruntime", "slipway"]

    inspected = subprocess.run([skopeo, "inspect", f"oci-archive:{archive}:v1"],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Digest"] == built["digest"]
    assert len(info["Layers"]) == 3
    assert "ORT_DYLIB_PATH=/usr/local/lib/slipway/libonnxruntime.so" in info["Env"]
    config = json.loads(subprocess.run(
        [skopeo, "inspect", "--config", f"oci-archive:{archive}:v1"],
        capture_output=True, text=True, timeout=120, check=True).stdout)["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/usr/local/bin/slipway"]
    assert config["Cmd"][0] == "server"

    rootfs = _unpack(archive, tmp_path, "v1")
    version = subprocess.run(_in_image(rootfs, "--version"), capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("slipway ")
    assert (rootfs / "etc" / "passwd").read_text().count(":65532:65532:") == 1
    assert (rootfs / "usr" / "local" / "lib" / "slipway" / "libonnxruntime.so").is_file()

    # Reproducible: the same inputs, the same digest.
    again = _build(slipway_bin, tmp_path / "again.tar", "--tag", "v1")
    assert again["digest"] == built["digest"]


def test_a_registered_model_baked_in_is_served_from_the_image(slipway_bin, slipway_factory,
                                                             tmp_path):
    _tool("skopeo")
    server = slipway_factory()
    client = MlflowClient(server.url, server.url)
    name = unique_name("img")
    client.create_registered_model(name)
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    client.log_artifacts(run.info.run_id, str(MLFLOW_MODEL), "model")
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "production", "1")

    archive = tmp_path / "model.tar"
    built = _build(slipway_bin, archive, "--model", f"models:/{name}@production",
                   "--tracking-uri", server.url)
    assert built["layers"][-1]["what"] == "model"
    plain = _build(slipway_bin, tmp_path / "plain.tar")
    # The lower layers are shared with an image without the model.
    assert [l["digest"] for l in plain["layers"]] == [l["digest"] for l in built["layers"][:3]]

    rootfs = _unpack(archive, tmp_path, "latest")
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["process"]["user"]["uid"] == 65532
    args = config["process"]["args"]
    assert args[:4] == ["/usr/local/bin/slipway", "serve", "-m", "/opt/slipway/model"]
    assert (rootfs / "opt" / "slipway" / "model" / "MLmodel").is_file()

    # The image's own command, with its paths under the unpacked root, run with its libraries.
    port = free_port()
    command = _in_image(rootfs, "serve", "-m", str(rootfs / "opt" / "slipway" / "model"),
                        "--port", str(port), "--onnxruntime",
                        str(rootfs / "usr" / "local" / "lib" / "slipway" / "libonnxruntime.so"))
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", process, tmp_path / "serve.log")
        r = requests.post(f"http://127.0.0.1:{port}/invocations", json=EXAMPLE, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"]["label"] == [1, 0]
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_the_dockerfile_builds_the_same_image_shape():
    """The Dockerfile (for teams that build with Docker) and `slipway image build` agree on what
    the Kubernetes manifests rely on: the user, the library path, the entry point."""
    text = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "ENV ORT_DYLIB_PATH=/usr/local/lib/slipway/libonnxruntime.so" in text
    assert "USER 65532:65532" in text
    assert 'ENTRYPOINT ["/usr/local/bin/slipway"]' in text
    assert "WORKDIR /var/lib/slipway" in text
