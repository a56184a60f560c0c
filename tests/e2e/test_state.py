"""The platform's state as code: `slipway export state` writes the server's policies, alerting
and permissions as YAML documents, one per object, that parse back and say what the commands
that made them said."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from mlflow import MlflowClient

from e2e_support import unique_name

pytestmark = pytest.mark.slipway_only


def test_export_state_writes_one_document_per_object(slipway_factory, slipway_bin, tmp_path):
    server = slipway_factory()
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.url)

    def cli(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([slipway_bin, *args], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
        return result

    model = unique_name("state-model")
    MlflowClient(server.url, server.url).create_registered_model(model)
    cli("policy", "set", model, "--approvals", "2")
    rules = tmp_path / "alerts.yml"
    rules.write_text(f"""
receivers:
  - name: oncall
    webhook: {{url: "http://127.0.0.1:9/hook"}}
rules:
  - alert: ModelErrors
    expr: error_rate > 0.1
    window: 5m
    runbook_url: https://runbooks.example.com/errors
""")
    cli("alerts", "rules", "apply", str(rules))
    cli("users", "create", "alice", "--role", "viewer", "--backend-store-uri",
        server.backend_store_uri)
    cli("permissions", "grant", "--user", "alice", "--model", model, "--permission", "EDIT")

    out = tmp_path / "state.yaml"
    written = cli("export", "state", "--output", str(out))
    assert "wrote 4 documents" in written.stderr, written.stderr
    documents = list(yaml.safe_load_all(out.read_text()))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Policy", model), ("AlertReceiver", "oncall"), ("AlertRule", "ModelErrors"),
        ("Permission", f"alice-registered_model-{model}")]
    assert all(d["apiVersion"] == "slipway/v1" for d in documents)
    policy, receiver, rule, permission = (d["spec"] for d in documents)
    assert policy["required_approvals"] == 2 and "production" in policy["protected_aliases"]
    assert receiver == {"webhook": {"url": "http://127.0.0.1:9/hook"}}
    assert rule["expr"] == "error_rate > 0.1" and rule["deployment"] == "*"
    assert rule["runbook_url"] == "https://runbooks.example.com/errors"
    assert permission == {"user": "alice", "registered_model": model, "permission": "EDIT"}
    # The same as JSON, for scripts.
    as_json = json.loads(cli("export", "state", "--json").stdout)
    assert [d["spec"] for d in as_json["documents"]] == [policy, receiver, rule, permission]
