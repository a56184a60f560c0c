import hashlib
import json
import os
from pathlib import Path

import pytest
import mlflow
import requests
from mlflow.exceptions import MlflowException


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def src_dir(tmp_path):
    d = tmp_path / "src"
    (d / "a" / "b").mkdir(parents=True)
    (d / "top.txt").write_text("top level\n")
    (d / "a" / "mid.csv").write_text("x,y\n1,2\n")
    (d / "a" / "b" / "deep.bin").write_bytes(bytes(range(256)) * 4)
    (d / "a" / "b" / "unicode é.txt").write_text("héllo wörld\n", encoding="utf-8")
    return d


def test_log_and_list_and_download(client, experiment_id, src_dir, tmp_path):
    single = tmp_path / "single.txt"
    single.write_text("just one file\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(single), artifact_path="sub/dir")
        mlflow.log_artifacts(str(src_dir), artifact_path="tree")
        mlflow.log_text("some notes\nline 2\n", "notes/readme.md")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config/params.json")
        mlflow.log_dict({"k": "v"}, "config/params.yaml")
    run_id = run.info.run_id

    root = {f.path: f for f in client.list_artifacts(run_id)}
    assert set(root) == {"single.txt", "sub", "tree", "notes", "config"}
    assert root["single.txt"].is_dir is False
    assert root["single.txt"].file_size == len("just one file\n")
    assert root["tree"].is_dir is True and root["sub"].is_dir is True

    tree = {f.path: f for f in client.list_artifacts(run_id, "tree")}
    assert set(tree) == {"tree/top.txt", "tree/a"}
    assert tree["tree/a"].is_dir
    deep = {f.path: f for f in client.list_artifacts(run_id, "tree/a/b")}
    assert set(deep) == {"tree/a/b/deep.bin", "tree/a/b/unicode é.txt"}
    assert deep["tree/a/b/deep.bin"].file_size == 1024
    fluent = mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="config")
    assert sorted(f.path for f in fluent) == ["config/params.json", "config/params.yaml"]

    # Download a single file.
    dst = tmp_path / "dl1"
    p = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="sub/dir/single.txt",
                                            dst_path=str(dst))
    assert Path(p).read_text() == "just one file\n"

    # Download a directory tree.
    dst = tmp_path / "dl2"
    p = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tree", dst_path=str(dst))
    assert _tree(Path(p)) == _tree(src_dir)

    # Through a runs:/ URI.
    dst = tmp_path / "dl3"
    p = mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/tree/a",
                                            dst_path=str(dst))
    assert _tree(Path(p)) == _tree(src_dir / "a")

    # Whole run.
    dst = tmp_path / "dl4"
    p = Path(client.download_artifacts(run_id, "", str(dst)))
    assert (p / "notes" / "readme.md").read_text() == "some notes\nline 2\n"
    assert json.loads((p / "config" / "params.json").read_text()) == {"a": 1, "b": [1, 2]}

    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/readme.md") == "some notes\nline 2\n"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"a": 1, "b": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/config/params.yaml").strip() == "k: v"


def test_artifact_uri_helpers(client, experiment_id, tmp_path):
    with mlflow.start_run() as run:
        mlflow.log_text("x", "f.txt")
        uri = mlflow.get_artifact_uri()
        assert uri == run.info.artifact_uri
        assert mlflow.get_artifact_uri("f.txt") == uri + "/f.txt"
    p = mlflow.artifacts.download_artifacts(artifact_uri=uri + "/f.txt", dst_path=str(tmp_path))
    assert Path(p).read_text() == "x"


def test_overwrite_artifact(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.log_text("v1", "same.txt")
        mlflow.log_text("version two", "same.txt")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/same.txt") == "version two"
    files = client.list_artifacts(run.info.run_id)
    assert [(f.path, f.file_size) for f in files] == [("same.txt", len("version two"))]


def test_empty_listing(client, experiment_id):
    run = client.create_run(experiment_id)
    assert client.list_artifacts(run.info.run_id) == []
    assert client.list_artifacts(run.info.run_id, "nope") == []


def test_missing_artifact_download_fails(client, experiment_id, tmp_path):
    run = client.create_run(experiment_id)
    with pytest.raises((MlflowException, OSError, requests.HTTPError)):
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="missing.txt",
                                            dst_path=str(tmp_path))


def test_large_binary_round_trip(client, experiment_id, tmp_path):
    size = 10 * 1024 * 1024 + 123
    data = os.urandom(size)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src), artifact_path="blobs")
    files = client.list_artifacts(run.info.run_id, "blobs")
    assert [(f.path, f.file_size) for f in files] == [("blobs/big.bin", size)]
    out = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                              artifact_path="blobs/big.bin",
                                              dst_path=str(tmp_path / "out"))
    got = Path(out).read_bytes()
    assert len(got) == size
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_artifact_proxy_raw(api, client, experiment_id):
    """The mlflow-artifacts proxy routes the client uses, checked on the wire."""
    with mlflow.start_run() as run:
        mlflow.log_text("hello\n", "dir/hello.txt")
    rel = f"{experiment_id}/{run.info.run_id}/artifacts"
    r = api.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": rel})
    assert r.status_code == 200
    assert r.json() == {"files": [{"path": "dir", "is_dir": True}]}
    r = api.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": rel + "/dir"})
    assert r.json() == {"files": [{"path": "hello.txt", "is_dir": False, "file_size": 6}]}
    r = api.get(f"/api/2.0/mlflow-artifacts/artifacts/{rel}/dir/hello.txt")
    assert r.status_code == 200 and r.content == b"hello\n"
    r = api.get(f"/api/2.0/mlflow-artifacts/artifacts/{rel}/dir/nothere.txt")
    assert r.status_code == 404
    # Tracking-API listing: paths relative to the run root, plus root_uri.
    r = api.get("artifacts/list", params={"run_id": run.info.run_id, "path": "dir"})
    assert r.status_code == 200
    body = r.json()
    assert body["root_uri"] == run.info.artifact_uri
    assert body["files"] == [{"path": "dir/hello.txt", "is_dir": False, "file_size": 6}]
    # Upload through the proxy, then read back with the client.
    r = api.request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{rel}/raw/up.bin",
                    data=b"\x00\x01\x02")
    assert r.status_code == 200
    assert [f.path for f in client.list_artifacts(run.info.run_id, "raw")] == ["raw/up.bin"]
