"""`slipway pipeline export FILE --to argo` writes an Argo Workflows ``Workflow`` that Argo and
Kubernetes accept, for a pipeline like the issue's (prepare -> train, the parameter
``n_estimators``, retries and a timeout) with the names and values that trip exporters up
(``_`` in names, strings such as ``yes`` and ``on`` that YAML 1.1 readers take for booleans).

* Argo: the document, as PyYAML (a YAML 1.1 reader, like kubectl's) reads it, against Argo
  Workflows' published JSON schema (``tests/fixtures/argo/workflow-schema.json``, see the README
  there), once as published and once made strict (``additionalProperties: false`` on every
  object definition): the published schema lets a misspelt field through.
* Kubernetes: ``kubernetes-validate`` (Kubernetes 1.31, strict) ships schemas for the built-in
  kinds only. A ``Workflow`` is a custom resource: ``validate`` raises ``SchemaNotFoundError``
  for it (the ``kubernetes-validate`` command only warns and exits 0), and there is no option to
  load a CRD's schema. So what Kubernetes itself will be handed is validated: each step's
  container template as the Pod Argo makes of it (container, volumes, service account,
  deadline, labels), and the workflow's metadata as the ObjectMeta of a ConfigMap.
* Names: what neither schema encodes. ``generateName``, label values, task and template names
  must be DNS-1123 labels, dependencies must name tasks, mounts must name volumes.
* Deliberately broken documents fail each check, so a pass means something.

The exporter is ``$SLIPWAY_BIN pipeline export FILE --to argo --workdir-claim pipeline-work -o
OUT``, as a user runs it.

No server: it runs once, in the SQLite pass of scripts/test.sh.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARGO_SCHEMA = REPO / "tests" / "fixtures" / "argo" / "workflow-schema.json"
KUBERNETES_VERSION = "1.31"
WORKFLOW_DEFINITION = "io.argoproj.workflow.v1alpha1.Workflow"
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

pytestmark = [
    pytest.mark.slipway_only,
    pytest.mark.skipif(bool(os.environ.get("E2E_BACKEND_STORE_URI")),
                       reason="no server, so the PostgreSQL pass would only repeat it"),
]

PIPELINE = """
name: churn_model
params: {n_estimators: 100, learning_rate: 0.1, tag: "yes"}
env: {PYTHONUNBUFFERED: "1"}
steps:
  prepare:
    run: python prepare.py --out data/train.parquet
    inputs: [raw/, prepare.py]
    outputs: [data/train.parquet]
  train:
    run: python train.py --n ${params.n_estimators} --lr ${params.learning_rate} --tag ${params.tag}
    inputs: [data/train.parquet, train.py]
    outputs: [model/]
    env: {OMP_NUM_THREADS: "2", EARLY_STOP: "on"}
    retries: 2
    timeout: 600
  evaluate_model:
    run: python evaluate.py
    inputs: [model/, data/train.parquet]
    outputs: [report.json]
"""


@pytest.fixture(autouse=True)
def _client_env():
    """Overrides conftest's: these tests need no tracking server, so none is started."""
    yield


def _exporter():
    """The export command, as a function of (pipeline file, output file)."""
    binary = os.environ.get("SLIPWAY_BIN")
    if not binary:
        pytest.skip("needs SLIPWAY_BIN (the slipway binary whose export is tested)")
    return lambda pipeline, out: [binary, "pipeline", "export", str(pipeline), "--to", "argo",
                                  "--workdir-claim", "pipeline-work", "-o", str(out)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[str, dict]:
    """The exported YAML text and the document PyYAML reads from it."""
    command_of = _exporter()
    root = tmp_path_factory.mktemp("argo-export")
    pipeline = root / "pipeline.yml"
    pipeline.write_text(PIPELINE)
    out = root / "workflow.yaml"
    command = command_of(pipeline, out)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    text = out.read_text()
    document = yaml.safe_load(text)
    assert isinstance(document, dict), f"not one YAML mapping:\n{text}"
    return text, document


@pytest.fixture(scope="module")
def workflow(exported) -> dict:
    return exported[1]


@pytest.fixture(scope="module")
def argo_schemas() -> dict[str, dict]:
    published = json.loads(ARGO_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(published)
    strict = copy.deepcopy(published)
    for definition in strict["definitions"].values():
        # The published schema has no composition (allOf, ...), so closing each object is sound.
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return {"published": published, "strict": strict}


def argo_errors(document: dict, schema: dict) -> list[str]:
    """Errors against the schema's root, as Argo's documentation validates; the root is a oneOf
    over the Argo kinds, which says only "valid under none", so the reasons come from the
    Workflow definition."""
    if jsonschema.Draft202012Validator(schema).is_valid(document):
        return []
    workflow_schema = {"$ref": f"#/definitions/{WORKFLOW_DEFINITION}",
                       "definitions": schema["definitions"]}
    errors = [f"{e.json_path}: {e.message[:300]}"
              for e in jsonschema.Draft202012Validator(workflow_schema).iter_errors(document)]
    return errors or ["valid under none of the root's kinds, though valid as a Workflow"]


def templates_by_name(document: dict) -> dict[str, dict]:
    return {t["name"]: t for t in document["spec"]["templates"]}


def step_templates(document: dict) -> list[dict]:
    return [t for t in document["spec"]["templates"] if "container" in t]


def pod_of(document: dict, template: dict) -> dict:
    """The Pod Argo makes to run a container template (without the sidecars Argo adds)."""
    spec = document["spec"]
    labels = {**spec.get("podMetadata", {}).get("labels", {}),
              **template.get("metadata", {}).get("labels", {})}
    metadata = {"name": template["name"], "labels": labels}
    if "namespace" in document["metadata"]:
        metadata["namespace"] = document["metadata"]["namespace"]
    pod_spec = {"restartPolicy": "Never", "containers": [template["container"]]}
    for key in ("volumes", "serviceAccountName"):
        if key in spec:
            pod_spec[key] = spec[key]
    if "activeDeadlineSeconds" in template:
        # Argo types it IntOrString and sets the Pod's integer from it.
        pod_spec["activeDeadlineSeconds"] = int(template["activeDeadlineSeconds"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def kubernetes_errors(document: dict) -> list[str]:
    """Errors of what Kubernetes is handed: each step's Pod, and the workflow's metadata."""
    manifests = [pod_of(document, t) for t in step_templates(document)]
    manifests.append({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": document["metadata"]})
    errors = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            errors.append(f"{manifest['kind']} {manifest['metadata'].get('name', '')}: "
                          f"{where}: {e.message[:300]}")
    return errors


def name_errors(document: dict) -> list[str]:
    errors = []

    def label(what: str, value) -> None:
        if not (isinstance(value, str) and DNS1123_LABEL.fullmatch(value)):
            errors.append(f"{what} {value!r} is not a DNS-1123 label")

    metadata = document["metadata"]
    generate = metadata.get("generateName", "")
    # The API server appends 5 characters; the name must stay a label (Argo labels pods with it).
    label("generateName + 5 characters", f"{generate}abcde")
    for key, value in metadata.get("labels", {}).items():
        label(f"label {key}", value)
    templates = templates_by_name(document)
    for template in document["spec"]["templates"]:
        label("template", template["name"])
        for key, value in template.get("metadata", {}).get("labels", {}).items():
            label(f"template {template['name']} label {key}", value)
    volumes = {v["name"] for v in document["spec"].get("volumes", [])}
    for template in step_templates(document):
        for mount in template["container"].get("volumeMounts", []):
            if mount["name"] not in volumes:
                errors.append(f"{template['name']} mounts the undeclared volume {mount['name']}")
    dag = templates[document["spec"]["entrypoint"]]["dag"]
    tasks = {t["name"] for t in dag["tasks"]}
    for task in dag["tasks"]:
        label("task", task["name"])
        if task["name"][0].isdigit():
            errors.append(f"task {task['name']}: Argo refuses a leading digit with dependencies")
        if task["template"] not in templates:
            errors.append(f"task {task['name']} runs the unknown template {task['template']}")
        for dependency in task.get("dependencies", []):
            if dependency not in tasks:
                errors.append(f"task {task['name']} depends on the unknown task {dependency}")
    return errors


def test_the_workflow_validates_against_argos_schema(workflow, argo_schemas):
    assert workflow["apiVersion"] == "argoproj.io/v1alpha1" and workflow["kind"] == "Workflow"
    for which, schema in argo_schemas.items():
        errors = argo_errors(workflow, schema)
        assert not errors, f"{which} Argo schema:\n" + "\n".join(errors)


def test_the_workflows_pods_validate_against_kubernetes(workflow):
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        # Why the Pods are validated instead: if a release learns CRDs, validate the Workflow.
        kubernetes_validate.validate(workflow, KUBERNETES_VERSION, strict=True)
    # Three steps, and the pipeline run's start and finish.
    assert len(step_templates(workflow)) == 5
    errors = kubernetes_errors(workflow)
    assert not errors, "\n".join(errors)


def test_names_follow_kubernetes_rules(workflow):
    errors = name_errors(workflow)
    assert not errors, "\n".join(errors)


def test_the_workflow_runs_the_pipeline_step_by_step(exported, workflow):
    text, _ = exported
    assert workflow["metadata"]["generateName"] == "churn-model-"
    assert workflow["metadata"]["labels"]["slipway.io/pipeline"] == "churn-model"
    assert {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]} == {
        "n_estimators": "100", "learning_rate": "0.1", "tag": "yes"}, text
    templates = templates_by_name(workflow)
    dag = _tasks(workflow)
    needs = {t["name"]: sorted(t.get("dependencies", [])) for t in dag}
    assert needs == {"slipway-start": [], "prepare": ["slipway-start"], "train": ["prepare"],
                     "evaluate-model": ["prepare", "train"]}, needs
    # One pipeline run per workflow: started first, joined by each step, ended on exit.
    assert workflow["spec"]["onExit"] == "slipway-finish"
    assert templates["slipway-start"]["container"]["args"][:2] == ["pipeline", "start"]
    assert templates["slipway-finish"]["container"]["args"][-2:] == [
        "--status", "{{workflow.status}}"]
    for task in dag:
        passed = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
        assert passed == {k: f"{{{{workflow.parameters.{k}}}}}"
                          for k in ("n_estimators", "learning_rate", "tag")}, task
    evaluate = templates["evaluate-model"]["container"]
    assert evaluate["command"] == ["slipway"]
    args = evaluate["args"]
    assert args[:2] == ["pipeline", "run"] and args[2].endswith("pipeline.yml"), args
    # The step is run under its own name, not its DNS one.
    assert args[args.index("--only") + 1] == "evaluate_model", args
    assert "n_estimators={{inputs.parameters.n_estimators}}" in args, args
    assert args[args.index("--group") + 1] == "{{workflow.uid}}", args
    train = templates["train"]
    assert train["retryStrategy"]["limit"] == "2"
    # slipway retries and times the step out inside the pod; the pod's deadline is a backstop
    # that leaves every attempt its full timeout.
    assert int(train["activeDeadlineSeconds"]) >= 3 * 600, train["activeDeadlineSeconds"]
    assert "retryStrategy" not in templates["prepare"]
    env = {e["name"]: e for e in train["container"]["env"]}
    assert env["EARLY_STOP"]["value"] == "on" and env["OMP_NUM_THREADS"]["value"] == "2"
    assert env["PYTHONUNBUFFERED"]["value"] == "1"
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "slipway-tracking", "key": "token", "optional": True}
    assert "MLFLOW_TRACKING_URI" in env
    for template in step_templates(workflow):
        container = template["container"]
        assert container["workingDir"] == "/work"
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def _broken(workflow: dict, change) -> dict:
    document = copy.deepcopy(workflow)
    change(document)
    return document


def _template(document: dict, name: str) -> dict:
    return templates_by_name(document)[name]


def _tasks(document: dict) -> list[dict]:
    return _template(document, document["spec"]["entrypoint"])["dag"]["tasks"]


def test_broken_documents_fail_the_checks(workflow, argo_schemas):
    """Each check on a copy with one mistake: a validator that passes everything proves nothing."""
    argo_broken = {
        "retry limit as a list": lambda d: _template(d, "train")["retryStrategy"].update(
            limit=[2]),
        "a DAG task without a name": lambda d: _tasks(d)[0].pop("name"),
        "templates as a mapping": lambda d: d["spec"].update(templates={"pipeline": {}}),
        "a parameter value as a boolean (an unquoted yes)":
            lambda d: d["spec"]["arguments"]["parameters"][-1].update(value=True),
        "no spec": lambda d: d.pop("spec"),
    }
    for what, change in argo_broken.items():
        document = _broken(workflow, change)
        for which, schema in argo_schemas.items():
            assert argo_errors(document, schema), f"{which} Argo schema accepted {what}"
    misspelt = _broken(workflow, lambda d: _template(d, "train").update(
        retryStategy=_template(d, "train")["retryStrategy"]))
    assert not argo_errors(misspelt, argo_schemas["published"]), "the published schema is open"
    assert argo_errors(misspelt, argo_schemas["strict"]), "the strict schema accepted retryStategy"

    kubernetes_broken = {
        "runAsNonRoot as a string": lambda d: _template(d, "train")["container"][
            "securityContext"].update(runAsNonRoot="true"),
        "a misspelt container field": lambda d: _template(d, "train")["container"].update(
            imagePullPolice="Always"),
        "an env entry without a name": lambda d: _template(d, "train")["container"]["env"].append(
            {"value": "x"}),
        "a label value as a number": lambda d: d["metadata"]["labels"].update(
            {"slipway.io/pipeline": 3}),
    }
    for what, change in kubernetes_broken.items():
        assert kubernetes_errors(_broken(workflow, change)), f"kubernetes-validate accepted {what}"

    names_broken = {
        "an underscore in a task name": lambda d: _tasks(d)[0].update(name="evaluate_model"),
        "a dependency on no task": lambda d: _tasks(d)[-1].update(dependencies=["nothing"]),
        "a capital in generateName": lambda d: d["metadata"].update(generateName="Churn-"),
        "a mount of no volume": lambda d: d["spec"].pop("volumes"),
    }
    for what, change in names_broken.items():
        assert name_errors(_broken(workflow, change)), f"the name checks accepted {what}"
