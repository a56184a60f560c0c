"""The Kubernetes manifests under deploy/kubernetes/: every overlay rendered with `kubectl
kustomize` (Debian's kubectl 1.20 or anything newer; scripts/test.sh installs Debian's when none
is there), every object validated against Kubernetes' own schemas for a pinned version with
kubernetes-validate (strict: no unknown fields), and what the manifests promise checked on the
rendered objects: probes, non-root and read-only root filesystems, the autoscaler, disruption
budgets and network policies that select what they mean to, every ConfigMap and Secret reference
resolved or documented, no credential written in clear, and every container's command line
accepted by the slipway binary itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "deploy" / "kubernetes"
OVERLAYS = ["small", "production"]
KUBERNETES_VERSION = "1.31"
# Secrets the operator creates (the production overlay's header and the README say how).
OPERATOR_SECRETS = {"slipway-postgres", "slipway-s3", "slipway-replica-token",
                    "slipway-metrics-token", "slipway-tls", "slipway-encryption"}


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true and kubectl is missing (scripts/test.sh installs Debian's "
                    "kubernetes-client)")
    pytest.skip("needs kubectl to render the kustomize overlays (apt-get install kubernetes-client)")


def _render(overlay: str) -> list[dict]:
    result = subprocess.run([_kubectl(), "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, _render(request.param)


def _of(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def _named(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in _of(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in _of(objects, kind)]}"
    return found[0]


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_specs(objects: list[dict]):
    for deployment in _of(objects, "Deployment"):
        yield deployment, deployment["spec"]["template"]


def test_every_object_is_valid_for_the_pinned_kubernetes(rendered):
    overlay, objects = rendered
    errors = []
    custom = []
    for manifest in objects:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # Custom resources: kubernetes-validate ships Kubernetes' own schemas only.
            custom.append(f"{manifest['apiVersion']}/{manifest['kind']}")
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            errors.append(f"{manifest['kind']} {manifest['metadata'].get('name')}: {where}: "
                          f"{e.message[:300]}")
    assert not errors, "\n".join(errors)
    assert set(custom) == {"monitoring.coreos.com/v1/ServiceMonitor"}, custom
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ServiceAccount", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy", "ConfigMap"} <= kinds, kinds
    assert all(o["metadata"].get("namespace") == "slipway"
               for o in objects if o["kind"] != "Namespace"), overlay


def test_pods_run_as_non_root_on_a_read_only_filesystem_with_probes(rendered):
    _, objects = rendered
    deployments = {d["metadata"]["name"] for d in _of(objects, "Deployment")}
    assert deployments == {"slipway-server", "slipway-serving"}
    for deployment, template in _pod_specs(objects):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            for probe in ("readinessProbe", "livenessProbe"):
                port = container[probe]["httpGet"]["port"]
                assert port in {p["name"] for p in container["ports"]}, where
            assert container["resources"]["requests"]["cpu"], where
            # The only writable places are volumes.
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, where


def test_selectors_reach_what_they_mean_to(rendered):
    _, objects = rendered
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in _of(objects, "Deployment")}
    for deployment in _of(objects, "Deployment"):
        assert _matches(deployment["spec"]["selector"]["matchLabels"],
                        deployment["spec"]["template"]["metadata"]["labels"])

    def selects(selector: dict) -> set[str]:
        return {name for name, labels in pods.items() if _matches(selector, labels)}

    for service in _of(objects, "Service"):
        assert len(selects(service["spec"]["selector"])) == 1, service["metadata"]["name"]
    for budget in _of(objects, "PodDisruptionBudget"):
        assert len(selects(budget["spec"]["selector"]["matchLabels"])) == 1
    for policy in _of(objects, "NetworkPolicy"):
        assert len(selects(policy["spec"]["podSelector"]["matchLabels"])) == 1
    hpa = _named(objects, "HorizontalPodAutoscaler", "slipway-serving")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "slipway-serving")
    assert hpa["spec"]["minReplicas"] >= 2
    services = {s["metadata"]["name"]: s for s in _of(objects, "Service")}
    for monitor in _of(objects, "ServiceMonitor"):
        matched = [s for s in services.values()
                   if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert len(matched) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in matched[0]["spec"]["ports"]}
        assert all(e["port"] in ports for e in monitor["spec"]["endpoints"])
    # The server's /metrics needs a token; the replicas' is open.
    server_monitor = _named(objects, "ServiceMonitor", "slipway-server")
    assert server_monitor["spec"]["endpoints"][0]["authorization"]["type"] == "Bearer"


def test_references_resolve_and_no_credential_is_written_in_clear(rendered):
    overlay, objects = rendered
    config_maps = {c["metadata"]["name"] for c in _of(objects, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in _of(objects, "PersistentVolumeClaim")}
    for deployment, template in _pod_specs(objects):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    assert source["configMapKeyRef"]["name"] in config_maps, env
                if "secretKeyRef" in source:
                    assert source["secretKeyRef"]["name"] in OPERATOR_SECRETS, env
                if any(word in env["name"] for word in ("SECRET", "TOKEN", "PASSWORD")):
                    assert "value" not in env, f"{env['name']} written in clear"
                if env["name"] == "SLIPWAY_BACKEND_STORE_URI" and "value" in env:
                    assert "@" not in env["value"], "a database password in clear"
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "secret" in volume:
                assert volume["secret"]["secretName"] in OPERATOR_SECRETS, volume
    assert not _of(objects, "Secret"), "credentials come from Secrets the operator makes"
    server = _named(objects, "Deployment", "slipway-server")
    env = {e["name"]: e for e in server["spec"]["template"]["spec"]["containers"][0]["env"]}
    if overlay == "small":
        # SQLite has one writer: one server, replaced, on the volume.
        assert server["spec"]["replicas"] == 1
        assert server["spec"]["strategy"]["type"] == "Recreate"
        assert env["SLIPWAY_BACKEND_STORE_URI"]["value"].startswith("sqlite:////var/lib/slipway/")
    else:
        assert server["spec"]["replicas"] >= 2
        assert env["SLIPWAY_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == \
            "slipway-postgres"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        # The master key by reference, to a file from a Secret: never a value in the manifest.
        reference = env["SLIPWAY_ENCRYPTION_KEY"]["value"]
        assert reference.startswith("file:"), reference
        template = server["spec"]["template"]
        volume = _mounted(template["spec"]["containers"][0], template, reference[len("file:"):])
        assert volume["secret"]["secretName"] == "slipway-encryption"
    assert env["SLIPWAY_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_every_command_line_is_one_slipway_accepts(rendered, slipway_bin):
    """The containers' arguments, with Kubernetes' $(VAR) expansion done, parse: a renamed flag
    would otherwise first fail in someone's cluster."""
    _, objects = rendered
    for deployment, template in _pod_specs(objects):
        for container in template["spec"]["containers"]:
            values = {e["name"]: "fraud" for e in container.get("env", [])}
            args = []
            for arg in container["args"]:
                for name, value in values.items():
                    arg = arg.replace(f"$({name})", value)
                assert "$(" not in arg, arg
                args.append(arg)
            result = subprocess.run([slipway_bin, *args, "--help"], capture_output=True,
                                    text=True, timeout=30)
            assert result.returncode == 0, f"{args}: {result.stderr}"
            assert "Usage:" in result.stdout


def _mounted(container: dict, template: dict, path: str) -> dict:
    """The volume `path` lies in, for `container`."""
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return volumes[mount["name"]]
    raise AssertionError(f"{path} is on no volume of {container['name']}")


def test_credentials_travel_over_tls_only(rendered):
    """The server takes passwords and tokens over HTTPS with a certificate from a Secret; its
    probes and Prometheus speak HTTPS to it; the replicas reach it by https:// and verify it
    against the CA alone, never holding the server's key."""
    _, objects = rendered
    server = _named(objects, "Deployment", "slipway-server")["spec"]["template"]
    container = server["spec"]["containers"][0]
    args = container["args"]
    assert "--auth" in args and "--insecure-no-tls" not in args, args
    for flag in ("--tls-cert", "--tls-key"):
        path = args[args.index(flag) + 1]
        assert _mounted(container, server, path)["secret"]["secretName"] == "slipway-tls"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
    endpoint = _named(objects, "ServiceMonitor", "slipway-server")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "slipway-tls", "key": "ca.crt"}
    serving = _named(objects, "Deployment", "slipway-serving")["spec"]["template"]
    replica = serving["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in replica["env"]}
    assert env["MLFLOW_TRACKING_URI"].startswith("https://slipway-server:"), env
    ca = _mounted(replica, serving, env["MLFLOW_TRACKING_SERVER_CERT_PATH"])
    assert ca["secret"]["secretName"] == "slipway-tls"
    assert [item["key"] for item in ca["secret"]["items"]] == ["ca.crt"], ca
