"""The platform's state as code: `slipway export state` writes the server's policies, alerting
and permissions as YAML documents, one per object, that parse back and say what the commands
that made them said."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow import MlflowClient

from e2e_support import cli_for, unique_name

pytestmark = pytest.mark.slipway_only


def test_export_state_writes_one_document_per_object(slipway_factory, slipway_bin, tmp_path):
    server = slipway_factory()
    cli = cli_for(slipway_bin, server.url)

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


def test_apply_makes_the_server_match_the_files_all_or_nothing(slipway_factory, slipway_bin,
                                                               tmp_path):
    server = slipway_factory()
    cli = cli_for(slipway_bin, server.url)

    client = MlflowClient(server.url, server.url)
    model = unique_name("gitops")
    client.create_registered_model(model)
    cli("users", "create", "bob", "--role", "viewer", "--backend-store-uri",
        server.backend_store_uri)
    # An alert rule made by hand before: apply leaves what it does not manage alone.
    manual = tmp_path / "manual.yml"
    manual.write_text("rules:\n  - alert: ByHand\n    expr: error_rate > 0.9\n    window: 1m\n")
    cli("alerts", "rules", "apply", str(manual))

    state = tmp_path / "state"
    state.mkdir()
    (state / "policy.yaml").write_text(f"""
apiVersion: slipway/v1
kind: Policy
metadata: {{name: {model}}}
spec:
  protected_aliases: [production]
  required_approvals: 2
""")
    (state / "alerting.yaml").write_text("""
apiVersion: slipway/v1
kind: AlertReceiver
metadata: {name: oncall}
spec:
  webhook: {url: "http://127.0.0.1:9/hook"}
---
apiVersion: slipway/v1
kind: AlertRule
metadata: {name: errors}
spec:
  alert: ModelErrors
  expr: error_rate > 0.1
  window: 5m
  receivers: [oncall]
""")
    (state / "permissions.yaml").write_text(f"""
apiVersion: slipway/v1
kind: Permission
metadata: {{name: bob-edits}}
spec: {{user: bob, registered_model: {model}, permission: edit}}
""")
    planned = cli("diff", "-f", str(state), check=False)
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert f"+ Policy/{model} (create)" in planned.stdout, planned.stdout
    assert "+ AlertRule/errors (create)" in planned.stdout, planned.stdout
    assert "4 to change, 0 unchanged, 0 drifted" in planned.stdout, planned.stdout
    applied = cli("apply", "-f", str(state))
    assert "applied" in applied.stdout, applied.stdout
    # Idempotent: a second apply, and diff, find nothing to do.
    again = cli("diff", "-f", str(state), check=False)
    assert again.returncode == 0 and "0 to change, 4 unchanged" in again.stdout, again.stdout
    cli("apply", "-f", str(state))
    rules = json.loads(cli("alerts", "rules", "show", "--json").stdout)
    names = sorted(r["alert"] for r in rules["rules"])
    assert names == ["ByHand", "ModelErrors"], rules
    policy = json.loads(cli("policy", "show", model).stdout)
    assert policy["required_approvals"] == 2, policy

    # A change made by hand to a managed object is drift: diff says so, apply puts it back.
    cli("policy", "set", model, "--approvals", "3", "--aliases", "production")
    drifted = cli("diff", "-f", str(state), check=False)
    assert drifted.returncode == 1, drifted.stdout
    assert f"! Policy/{model} changed outside apply: required_approvals" in drifted.stdout
    assert f"~ Policy/{model} (update): required_approvals" in drifted.stdout
    cli("apply", "-f", str(state))
    assert cli("diff", "-f", str(state), check=False).returncode == 0

    # A managed object the files no longer name is removed; unmanaged ones stay.
    (state / "alerting.yaml").write_text("""
apiVersion: slipway/v1
kind: AlertReceiver
metadata: {name: oncall}
spec:
  webhook: {url: "http://127.0.0.1:9/hook"}
""")
    pruned = cli("diff", "-f", str(state), check=False)
    assert "- AlertRule/ModelErrors (delete)" in pruned.stdout, pruned.stdout
    cli("apply", "-f", str(state))
    rules = json.loads(cli("alerts", "rules", "show", "--json").stdout)
    assert [r["alert"] for r in rules["rules"]] == ["ByHand"], rules

    # A failed apply leaves nothing applied: the policy change before the failing permission
    # is undone.
    (state / "policy.yaml").write_text((state / "policy.yaml").read_text().replace(
        "required_approvals: 2", "required_approvals: 5"))
    (state / "permissions.yaml").write_text(f"""
apiVersion: slipway/v1
kind: Permission
metadata: {{name: nobody-edits}}
spec: {{user: nobody-by-this-name, registered_model: {model}, permission: EDIT}}
""")
    failed = cli("apply", "-f", str(state), check=False)
    assert failed.returncode != 0, failed.stdout
    assert "nobody-by-this-name" in failed.stderr and "undone" in failed.stderr, failed.stderr
    policy = json.loads(cli("policy", "show", model).stdout)
    assert policy["required_approvals"] == 2, policy
    # A document that does not read is refused before anything is tried.
    (state / "bad.yaml").write_text("apiVersion: slipway/v1\nkind: Policy\nmetadata: {name: x}\n"
                                    "spec: {required_aprovals: 1}\n")
    refused = cli("diff", "-f", str(state), check=False)
    assert refused.returncode != 0 and "required_aprovals" in refused.stderr, refused.stderr

    audit = json.loads(cli("audit", "log", "--json", "--backend-store-uri",
                           server.backend_store_uri).stdout)
    entries = audit["entries"] if isinstance(audit, dict) else audit
    assert any(e["action"] == "state.apply" for e in entries), entries[:5]
