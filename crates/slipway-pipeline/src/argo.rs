//! A pipeline as an Argo Workflows `Workflow`: a DAG template with one task per step, and one
//! container template per step that runs `slipway pipeline run FILE --only STEP` in the slipway
//! image. The cache works as in a local run: each pod looks a step's key up (beside the
//! pipeline file, then on the tracking server the options name, under the pipeline's
//! experiment), restores a stored result instead of running, and stores what it ran. The pods
//! share one working folder (a PersistentVolumeClaim mounted at [`WORKDIR`]), so a step finds
//! the outputs of the steps before it where a local run leaves them.
//!
//! One workflow is one pipeline run on the tracking server: a first task
//! (`slipway pipeline start --group {{workflow.uid}}`) creates it, every step's run nests under
//! it (`--group`), and the exit handler (`slipway pipeline finish`) ends it with the workflow's
//! status.
//!
//! Names go through the Kubernetes rules (DNS-1123 labels: lowercase letters, digits and `-`);
//! the step's own name is kept where slipway reads it (`--only`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::error::PipelineError;
use crate::graph::Graph;
use crate::spec::{PipelineSpec, StepSpec};

/// Where the working folder is mounted in every step's container.
pub const WORKDIR: &str = "/work";
/// The DAG template, and so the workflow's entrypoint.
pub const ENTRYPOINT: &str = "pipeline";
/// The first task and its template: the pipeline's run on the tracking server.
pub const START: &str = "slipway-start";
/// The exit handler's template: the pipeline's run ended with the workflow's status.
pub const FINISH: &str = "slipway-finish";
/// What ties a workflow's pods to its one pipeline run.
const GROUP: &str = "{{workflow.uid}}";
/// The Secret whose `token` key, when it exists, becomes `MLFLOW_TRACKING_TOKEN`.
pub const TRACKING_SECRET: &str = "slipway-tracking";
pub const TRACKING_SECRET_KEY: &str = "token";
/// Label (and annotation) keys on the workflow, its pods and its templates.
pub const PIPELINE_LABEL: &str = "slipway.io/pipeline";
pub const STEP_LABEL: &str = "slipway.io/step";

/// The volume name of the working folder in the workflow's pods.
const WORK_VOLUME: &str = "work";
/// Longest DNS-1123 label.
const LABEL_MAX: usize = 63;
/// The API server appends 5 random characters to a `generateName` of at most 58.
const GENERATE_NAME_MAX: usize = 58;
/// Seconds a step's pod gets beyond its attempts' timeouts: pulling the image, restoring a
/// cached result, storing the outputs on the server.
const POD_OVERHEAD_S: u64 = 600;
/// Room left in a task name for a `-N` that makes it unique (a pipeline has at most 500 steps).
const TASK_BASE_MAX: usize = LABEL_MAX - 5;

/// How the workflow reaches its image, its tracking server and its working folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgoOptions {
    /// The image with the `slipway` binary (and whatever the steps' commands need).
    pub image: String,
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    /// The tracking server as the pods reach it (`MLFLOW_TRACKING_URI`).
    pub tracking_uri: String,
    /// A PersistentVolumeClaim mounted at [`WORKDIR`], holding the pipeline's folder. Without
    /// one each pod has only what the image holds, and a step finds no output of the steps
    /// before it.
    pub workdir_claim: Option<String>,
    /// The pipeline file, relative to the mounted working folder.
    pub pipeline_file: String,
}

/// `text` as a DNS-1123 label of at most `max` characters: lowercase, every character outside
/// `[a-z0-9-]` (`_` above all) as `-`, no `-` at either end. Empty when nothing is left.
fn dns_label(text: &str, max: usize) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    // Only ASCII is left, so a byte count is a character count.
    trimmed[..trimmed.len().min(max)]
        .trim_end_matches('-')
        .to_owned()
}

/// Each step's task and template name: a DNS-1123 label starting with a letter (Argo refuses a
/// task name starting with a digit once tasks have dependencies), unique even where two step
/// names map to one label (`a_b` and `a-b`), and never the DAG template's own name.
fn task_names(spec: &PipelineSpec) -> BTreeMap<String, String> {
    let mut used = BTreeSet::from([ENTRYPOINT.to_owned(), START.to_owned(), FINISH.to_owned()]);
    let mut names = BTreeMap::new();
    for step in spec.steps.keys() {
        let mut base = dns_label(step, usize::MAX);
        if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
            base = format!("step-{base}");
        }
        let base = dns_label(&base, TASK_BASE_MAX);
        let mut name = base.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        names.insert(step.clone(), name);
    }
    names
}

fn or_default(label: String, default: &str) -> String {
    if label.is_empty() {
        default.to_owned()
    } else {
        label
    }
}

/// The pipeline file's path inside the container.
fn pipeline_path(file: &str) -> String {
    if file.starts_with('/') {
        return file.to_owned();
    }
    let mut relative = file;
    while let Some(rest) = relative.strip_prefix("./") {
        relative = rest;
    }
    format!("{WORKDIR}/{relative}")
}

/// The Argo `Workflow` that runs `spec` (its DAG `graph`) step by step in pods.
pub fn workflow(spec: &PipelineSpec, graph: &Graph, options: &ArgoOptions) -> Value {
    let names = task_names(spec);
    let pipeline_label = or_default(dns_label(&spec.name, LABEL_MAX), ENTRYPOINT);
    let generate_name = format!(
        "{}-",
        or_default(dns_label(&spec.name, GENERATE_NAME_MAX - 1), ENTRYPOINT)
    );
    let params: Vec<&String> = spec.params.keys().collect();

    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(generate_name));
    if let Some(namespace) = &options.namespace {
        metadata.insert("namespace".into(), json!(namespace));
    }
    metadata.insert(
        "labels".into(),
        json!({ PIPELINE_LABEL: pipeline_label.clone() }),
    );
    // The label had to lose `_`, capitals and length; the annotation keeps the name slipway
    // tracks the runs under.
    metadata.insert(
        "annotations".into(),
        json!({ PIPELINE_LABEL: spec.name.clone() }),
    );

    // The graph is `Graph::of(spec)`; a step it names that the spec lacks is left out rather
    // than panicked on.
    let order: Vec<(&String, &String, &StepSpec)> = graph
        .order
        .iter()
        .filter_map(|step| Some((step, names.get(step)?, spec.steps.get(step)?)))
        .collect();
    let tasks: Vec<Value> = order
        .iter()
        .map(|(step, name, _)| {
            let mut task = Map::new();
            task.insert("name".into(), json!(name));
            task.insert("template".into(), json!(name));
            let needs: Vec<&String> = graph
                .needs
                .get(*step)
                .map(|needs| needs.keys().filter_map(|dep| names.get(dep)).collect())
                .unwrap_or_default();
            // The pipeline's run exists before any step's run nests under it.
            let needs: Vec<&str> = if needs.is_empty() {
                vec![START]
            } else {
                needs.iter().map(|n| n.as_str()).collect()
            };
            task.insert("dependencies".into(), json!(needs));
            if !params.is_empty() {
                let passed: Vec<Value> = params
                    .iter()
                    .map(
                        |k| json!({"name": k, "value": format!("{{{{workflow.parameters.{k}}}}}")}),
                    )
                    .collect();
                task.insert("arguments".into(), json!({ "parameters": passed }));
            }
            Value::Object(task)
        })
        .collect();
    let mut start_task = Map::new();
    start_task.insert("name".into(), json!(START));
    start_task.insert("template".into(), json!(START));
    if !params.is_empty() {
        let passed: Vec<Value> = params
            .iter()
            .map(|k| json!({"name": k, "value": format!("{{{{workflow.parameters.{k}}}}}")}))
            .collect();
        start_task.insert("arguments".into(), json!({ "parameters": passed }));
    }
    let mut tasks = tasks;
    tasks.insert(0, Value::Object(start_task));

    let mut templates = vec![json!({
        "name": ENTRYPOINT,
        "dag": { "tasks": tasks },
    })];
    let file = pipeline_path(&options.pipeline_file);
    let mut start_args = vec![
        "pipeline".to_owned(),
        "start".to_owned(),
        file.clone(),
        "--group".to_owned(),
        GROUP.to_owned(),
    ];
    for k in spec.params.keys() {
        start_args.push("--param".to_owned());
        start_args.push(format!("{k}={{{{inputs.parameters.{k}}}}}"));
    }
    templates.push(slipway_template(
        spec,
        START,
        start_args,
        &BTreeMap::new(),
        &pipeline_label,
        options,
        !spec.params.is_empty(),
    ));
    templates.push(slipway_template(
        spec,
        FINISH,
        vec![
            "pipeline".to_owned(),
            "finish".to_owned(),
            file,
            "--group".to_owned(),
            GROUP.to_owned(),
            "--status".to_owned(),
            "{{workflow.status}}".to_owned(),
        ],
        &BTreeMap::new(),
        &pipeline_label,
        options,
        false,
    ));
    for (step, name, step_spec) in &order {
        templates.push(step_template(
            spec,
            step,
            step_spec,
            name,
            &pipeline_label,
            options,
        ));
    }

    let mut workflow_spec = Map::new();
    workflow_spec.insert("entrypoint".into(), json!(ENTRYPOINT));
    workflow_spec.insert("onExit".into(), json!(FINISH));
    if let Some(account) = &options.service_account {
        workflow_spec.insert("serviceAccountName".into(), json!(account));
    }
    if !params.is_empty() {
        let defaults: Vec<Value> = spec
            .params
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v.to_string()}))
            .collect();
        workflow_spec.insert("arguments".into(), json!({ "parameters": defaults }));
    }
    workflow_spec.insert(
        "podMetadata".into(),
        json!({"labels": { PIPELINE_LABEL: pipeline_label }}),
    );
    if let Some(claim) = &options.workdir_claim {
        workflow_spec.insert(
            "volumes".into(),
            json!([{"name": WORK_VOLUME, "persistentVolumeClaim": {"claimName": claim}}]),
        );
    }
    workflow_spec.insert("templates".into(), json!(templates));

    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": workflow_spec,
    })
}

fn step_template(
    spec: &PipelineSpec,
    step: &str,
    step_spec: &StepSpec,
    name: &str,
    pipeline_label: &str,
    options: &ArgoOptions,
) -> Value {
    let mut args = vec![
        "pipeline".to_owned(),
        "run".to_owned(),
        pipeline_path(&options.pipeline_file),
        "--only".to_owned(),
        step.to_owned(),
        "--group".to_owned(),
        GROUP.to_owned(),
    ];
    // Through the template's inputs rather than straight from the workflow, so a task's
    // arguments are what its pod runs with (and what Argo's UI shows for it).
    for k in spec.params.keys() {
        args.push("--param".to_owned());
        args.push(format!("{k}={{{{inputs.parameters.{k}}}}}"));
    }
    let mut template = slipway_template(
        spec,
        name,
        args,
        &step_spec.env,
        pipeline_label,
        options,
        !spec.params.is_empty(),
    );
    let Value::Object(template_map) = &mut template else {
        return template;
    };
    // `slipway pipeline run --only` applies the step's retries and per-attempt timeout inside
    // the pod, as a local run does; Argo's own only cover what slipway cannot see from there.
    // Argo's schema types both fields as IntOrString, published as a string; Argo reads the
    // number out of it.
    if step_spec.retries > 0 {
        // OnError: a pod lost with its node, evicted or never started. A failed command has
        // had its retries inside the pod already; retrying the pod too would square them.
        template_map.insert(
            "retryStrategy".into(),
            json!({"limit": step_spec.retries.to_string(), "retryPolicy": "OnError"}),
        );
    }
    if step_spec.timeout > 0 {
        // A backstop for a pod that hangs: every attempt may take the full timeout, and the
        // pod also starts, restores inputs' results and stores its outputs.
        let deadline = (u64::from(step_spec.retries) + 1)
            .saturating_mul(step_spec.timeout)
            .saturating_add(POD_OVERHEAD_S);
        template_map.insert("activeDeadlineSeconds".into(), json!(deadline.to_string()));
    }
    template
}

/// A container template running `slipway ARGS` in the image, against the tracking server, in
/// the working folder, with the pipeline's environment and `step_env` over it.
fn slipway_template(
    spec: &PipelineSpec,
    name: &str,
    args: Vec<String>,
    step_env: &BTreeMap<String, String>,
    pipeline_label: &str,
    options: &ArgoOptions,
    with_params: bool,
) -> Value {
    // As in a local run, the tracking server is the caller's and wins over a declared variable
    // of the same name.
    let mut declared = spec.env.clone();
    declared.extend(step_env.clone());
    declared.remove("MLFLOW_TRACKING_URI");
    declared.remove("MLFLOW_TRACKING_TOKEN");
    let mut env = vec![
        json!({"name": "MLFLOW_TRACKING_URI", "value": options.tracking_uri}),
        // Optional, so a server without authentication needs no Secret.
        json!({"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": TRACKING_SECRET, "key": TRACKING_SECRET_KEY, "optional": true,
        }}}),
    ];
    env.extend(declared.iter().map(|(k, v)| json!({"name": k, "value": v})));

    let mut container = Map::new();
    container.insert("name".into(), json!("main"));
    container.insert("image".into(), json!(options.image));
    container.insert("command".into(), json!(["slipway"]));
    container.insert("args".into(), json!(args));
    container.insert("workingDir".into(), json!(WORKDIR));
    container.insert("env".into(), json!(env));
    if options.workdir_claim.is_some() {
        container.insert(
            "volumeMounts".into(),
            json!([{"name": WORK_VOLUME, "mountPath": WORKDIR}]),
        );
    }
    // The steps run users' commands: no root, no way to gain privileges, no capabilities, the
    // runtime's seccomp profile (what the `restricted` Pod Security Standard asks of a pod).
    container.insert(
        "securityContext".into(),
        json!({
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }),
    );

    let mut template = Map::new();
    template.insert("name".into(), json!(name));
    template.insert(
        "metadata".into(),
        json!({"labels": { PIPELINE_LABEL: pipeline_label, STEP_LABEL: name }}),
    );
    if with_params {
        let inputs: Vec<Value> = spec.params.keys().map(|k| json!({"name": k})).collect();
        template.insert("inputs".into(), json!({ "parameters": inputs }));
    }
    template.insert("container".into(), Value::Object(container));
    Value::Object(template)
}

/// Whether a YAML 1.1 reader (PyYAML, and the Go YAML kubectl and Argo read manifests with)
/// would take this plain scalar for something other than a string, where a YAML 1.2 writer
/// leaves it unquoted: `yes`, `on`, `1_000`, `1:30`, `2024-01-01`, `=`. Errs on quoting more.
fn yaml11_ambiguous(text: &str) -> bool {
    const WORDS: [&str; 16] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "=", "<<", ".inf",
        "-.inf", "+.inf", ".nan",
    ];
    if text.contains('\n') {
        // Written as a literal block, which is a string in any YAML.
        return false;
    }
    let lower = text.to_ascii_lowercase();
    let mut chars = text.chars();
    let first = chars.next();
    let second = chars.next();
    WORDS.contains(&lower.as_str())
        || first.is_some_and(|c| c.is_ascii_digit())
        || (matches!(first, Some('+' | '-' | '.'))
            && second.is_some_and(|c| c.is_ascii_digit() || c == '.'))
}

/// `value` with every ambiguous string (keys too) swapped for a placeholder, the strings kept
/// in `swapped` in placeholder order.
fn mask(value: &Value, prefix: &str, swapped: &mut Vec<String>) -> Value {
    let swap = |text: &String, swapped: &mut Vec<String>| {
        if yaml11_ambiguous(text) {
            swapped.push(text.clone());
            format!("{prefix}{}z", swapped.len() - 1)
        } else {
            text.clone()
        }
    };
    match value {
        Value::String(text) => Value::String(swap(text, swapped)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| mask(item, prefix, swapped))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = swap(k, swapped);
                    (key, mask(v, prefix, swapped))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The workflow as YAML that YAML 1.1 readers (kubectl, `argo submit`, PyYAML) read back
/// unchanged: strings they would take for booleans, numbers or dates are single-quoted, which
/// the YAML writer (YAML 1.2, where `on` is a string) does not do by itself.
pub fn to_yaml(value: &Value) -> Result<String, PipelineError> {
    let failed =
        |e: &dyn std::fmt::Display| PipelineError::Io(format!("writing the workflow as YAML: {e}"));
    // A placeholder prefix that occurs nowhere in the document, so replacing it touches only
    // the placeholders; the `z` after the number keeps `…1z` from matching inside `…10z`.
    let whole = serde_json::to_string(value).map_err(|e| failed(&e))?;
    let mut prefix = String::from("slipwayquoted");
    while whole.contains(&prefix) {
        prefix.push('x');
    }
    let mut swapped = Vec::new();
    let masked = mask(value, &prefix, &mut swapped);
    let mut text = yaml_serde::to_string(&masked).map_err(|e| failed(&e))?;
    for (i, original) in swapped.iter().enumerate() {
        let quoted = format!("'{}'", original.replace('\'', "''"));
        text = text.replace(&format!("{prefix}{i}z"), &quoted);
    }
    // The swap is textual: make sure the result still says exactly what `value` says.
    let back: Value = yaml_serde::from_str(&text).map_err(|e| failed(&e))?;
    if &back != value {
        return Err(failed(&"the YAML does not read back as the workflow"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kubernetes rule for object names and label values that are DNS-1123 labels.
    fn is_dns1123_label(text: &str) -> bool {
        let bytes = text.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= LABEL_MAX
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    }

    fn options() -> ArgoOptions {
        ArgoOptions {
            image: "ghcr.io/slipway-mlops/slipway:latest".into(),
            namespace: Some("ml".into()),
            service_account: Some("pipelines".into()),
            tracking_uri: "http://slipway:5000".into(),
            workdir_claim: Some("pipeline-work".into()),
            pipeline_file: "./churn/pipeline.yml".into(),
        }
    }

    const CHURN: &str = r#"
name: churn
params: {n_estimators: 100, tag: "v1"}
env: {PYTHONHASHSEED: "0"}
steps:
  prepare:
    run: python prepare.py --out data/train.parquet
    inputs: [raw/, prepare.py]
    outputs: [data/train.parquet]
  train:
    run: python train.py --n ${params.n_estimators} --tag ${params.tag}
    inputs: [data/train.parquet, train.py]
    outputs: [model/]
    env: {OMP_NUM_THREADS: "2", PYTHONHASHSEED: "1"}
    retries: 2
    timeout: 600
  evaluate:
    run: python evaluate.py
    inputs: [model/, data/train.parquet]
    outputs: [report.json]
  lint:
    run: ruff check .
    inputs: [train.py]
"#;

    fn export(text: &str) -> (PipelineSpec, Graph, Value) {
        let spec = PipelineSpec::from_yaml(text).unwrap();
        let graph = Graph::of(&spec).unwrap();
        let workflow = workflow(&spec, &graph, &options());
        (spec, graph, workflow)
    }

    fn template<'a>(workflow: &'a Value, name: &str) -> &'a Value {
        workflow["spec"]["templates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no template {name}"))
    }

    fn tasks(workflow: &Value) -> &Vec<Value> {
        template(workflow, ENTRYPOINT)["dag"]["tasks"]
            .as_array()
            .unwrap()
    }

    fn strings(value: &Value) -> Vec<&str> {
        value
            .as_array()
            .map(|items| items.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_workflow_is_a_dag_with_one_container_per_step() {
        let (_, graph, workflow) = export(CHURN);
        assert_eq!(workflow["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(workflow["kind"], "Workflow");
        assert_eq!(workflow["metadata"]["generateName"], "churn-");
        assert_eq!(workflow["metadata"]["namespace"], "ml");
        assert_eq!(workflow["metadata"]["labels"][PIPELINE_LABEL], "churn");
        assert_eq!(workflow["spec"]["entrypoint"], ENTRYPOINT);
        assert_eq!(workflow["spec"]["serviceAccountName"], "pipelines");
        assert_eq!(workflow["spec"]["onExit"], FINISH);
        let all = tasks(&workflow);
        assert_eq!(all[0]["name"], START, "the pipeline's run is made first");
        assert!(all[0].get("dependencies").is_none());
        let tasks = &all[1..];
        assert_eq!(
            tasks
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect::<Vec<_>>(),
            graph.order
        );
        for task in tasks {
            let step = task["name"].as_str().unwrap();
            assert_eq!(task["template"], step);
            let mut expected: Vec<&str> = graph.needs[step].keys().map(String::as_str).collect();
            if expected.is_empty() {
                expected.push(START);
            }
            assert_eq!(strings(&task["dependencies"]), expected, "{step}");
            assert!(template(&workflow, step)["container"].is_object());
        }
        assert_eq!(
            strings(&tasks[3]["dependencies"]),
            ["prepare", "train"],
            "evaluate"
        );
        assert_eq!(workflow["spec"]["templates"].as_array().unwrap().len(), 7);
        // One pipeline run per workflow: made first, joined by every step, ended on exit.
        let start = &template(&workflow, START)["container"];
        assert_eq!(
            strings(&start["args"])[..5],
            [
                "pipeline",
                "start",
                "/work/churn/pipeline.yml",
                "--group",
                "{{workflow.uid}}"
            ]
        );
        let finish = &template(&workflow, FINISH)["container"];
        assert_eq!(
            strings(&finish["args"]),
            [
                "pipeline",
                "finish",
                "/work/churn/pipeline.yml",
                "--group",
                "{{workflow.uid}}",
                "--status",
                "{{workflow.status}}"
            ]
        );
        assert_eq!(finish["securityContext"]["runAsNonRoot"], true);
    }

    #[test]
    fn parameters_are_passed_to_every_step() {
        let (_, _, workflow) = export(CHURN);
        assert_eq!(
            workflow["spec"]["arguments"]["parameters"],
            json!([{"name": "n_estimators", "value": "100"}, {"name": "tag", "value": "v1"}])
        );
        for task in tasks(&workflow) {
            assert_eq!(
                task["arguments"]["parameters"],
                json!([
                    {"name": "n_estimators", "value": "{{workflow.parameters.n_estimators}}"},
                    {"name": "tag", "value": "{{workflow.parameters.tag}}"},
                ])
            );
            let template = template(&workflow, task["name"].as_str().unwrap());
            assert_eq!(
                template["inputs"]["parameters"],
                json!([{"name": "n_estimators"}, {"name": "tag"}])
            );
        }
        let train = &template(&workflow, "train")["container"];
        assert_eq!(train["command"], json!(["slipway"]));
        assert_eq!(
            strings(&train["args"]),
            [
                "pipeline",
                "run",
                "/work/churn/pipeline.yml",
                "--only",
                "train",
                "--group",
                "{{workflow.uid}}",
                "--param",
                "n_estimators={{inputs.parameters.n_estimators}}",
                "--param",
                "tag={{inputs.parameters.tag}}",
            ]
        );
        let (_, _, bare) = export("name: p\nsteps:\n  a: {run: x}\n");
        assert!(bare["spec"].get("arguments").is_none());
        assert!(tasks(&bare).iter().all(|t| t.get("arguments").is_none()));
        assert!(template(&bare, "a").get("inputs").is_none());
    }

    #[test]
    fn retries_and_timeouts_map_to_the_template() {
        let (_, _, workflow) = export(CHURN);
        let train = template(&workflow, "train");
        assert_eq!(
            train["retryStrategy"],
            json!({"limit": "2", "retryPolicy": "OnError"})
        );
        // Three attempts of 600 s, and the pod's own start and storing.
        assert_eq!(train["activeDeadlineSeconds"], "2400");
        let (_, _, once) = export("name: p\nsteps:\n  a: {run: x, timeout: 5}\n");
        assert_eq!(template(&once, "a")["activeDeadlineSeconds"], "605");
        assert!(template(&once, "a").get("retryStrategy").is_none());
        let prepare = template(&workflow, "prepare");
        assert!(prepare.get("retryStrategy").is_none());
        assert!(prepare.get("activeDeadlineSeconds").is_none());
    }

    #[test]
    fn environment_secret_volume_and_security() {
        let (_, _, workflow) = export(CHURN);
        assert_eq!(
            workflow["spec"]["volumes"],
            json!([{"name": "work", "persistentVolumeClaim": {"claimName": "pipeline-work"}}])
        );
        let train = &template(&workflow, "train")["container"];
        assert_eq!(train["workingDir"], WORKDIR);
        assert_eq!(
            train["volumeMounts"],
            json!([{"name": "work", "mountPath": "/work"}])
        );
        assert_eq!(
            train["env"],
            json!([
                {"name": "MLFLOW_TRACKING_URI", "value": "http://slipway:5000"},
                {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef":
                    {"name": "slipway-tracking", "key": "token", "optional": true}}},
                {"name": "OMP_NUM_THREADS", "value": "2"},
                // The step's value wins over the pipeline's, as in a local run.
                {"name": "PYTHONHASHSEED", "value": "1"},
            ])
        );
        assert_eq!(train["securityContext"]["runAsNonRoot"], true);
        assert_eq!(train["securityContext"]["allowPrivilegeEscalation"], false);

        let spec = PipelineSpec::from_yaml(
            "name: p\nenv: {MLFLOW_TRACKING_URI: 'http://elsewhere'}\nsteps:\n  a: {run: x}\n",
        )
        .unwrap();
        let graph = Graph::of(&spec).unwrap();
        let local = super::workflow(
            &spec,
            &graph,
            &ArgoOptions {
                workdir_claim: None,
                namespace: None,
                service_account: None,
                pipeline_file: "pipeline.yml".into(),
                ..options()
            },
        );
        assert!(local["spec"].get("volumes").is_none());
        assert!(local["metadata"].get("namespace").is_none());
        assert!(local["spec"].get("serviceAccountName").is_none());
        let container = &template(&local, "a")["container"];
        assert!(container.get("volumeMounts").is_none());
        assert_eq!(container["args"][2], "/work/pipeline.yml");
        assert_eq!(
            container["env"],
            json!([
                {"name": "MLFLOW_TRACKING_URI", "value": "http://slipway:5000"},
                {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef":
                    {"name": "slipway-tracking", "key": "token", "optional": true}}},
            ])
        );
    }

    #[test]
    fn the_dns_checker_knows_the_rule() {
        for good in ["a", "churn", "step-1", "a-b-c", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a.b", "ä", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }

    #[test]
    fn underscores_capitals_and_clashes_become_distinct_dns_names() {
        let long = format!("Step_{}", "x".repeat(95));
        let text = format!(
            r#"
name: __Churn_Model_
params: {{learning_rate: 0.1}}
steps:
  Prepare_Data: {{run: p, outputs: [data/]}}
  prepare-data: {{run: q, outputs: [other/]}}
  _1st_pass: {{run: r, inputs: [data/], outputs: [first/]}}
  pipeline: {{run: s, inputs: [first/, other/]}}
  {long}: {{run: t}}
"#
        );
        let (spec, graph, workflow) = export(&text);
        assert_eq!(workflow["metadata"]["generateName"], "churn-model-");
        assert_eq!(
            workflow["metadata"]["labels"][PIPELINE_LABEL],
            "churn-model"
        );
        assert_eq!(
            workflow["metadata"]["annotations"][PIPELINE_LABEL],
            "__Churn_Model_"
        );
        let names = task_names(&spec);
        assert_eq!(names["Prepare_Data"], "prepare-data");
        assert_eq!(names["prepare-data"], "prepare-data-2");
        assert_eq!(names["_1st_pass"], "step-1st-pass");
        assert_eq!(
            names["pipeline"], "pipeline-2",
            "the DAG template is `pipeline`"
        );
        assert_eq!(names[&long].len(), TASK_BASE_MAX);
        let unique: BTreeSet<&String> = names.values().collect();
        assert_eq!(unique.len(), names.len());

        let templates = workflow["spec"]["templates"].as_array().unwrap();
        for template in templates {
            let name = template["name"].as_str().unwrap();
            assert!(is_dns1123_label(name), "template {name}");
        }
        for task in tasks(&workflow) {
            let name = task["name"].as_str().unwrap();
            assert!(is_dns1123_label(name), "task {name}");
            assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
            for dep in strings(&task["dependencies"]) {
                assert!(dep == START || names.values().any(|n| n == dep), "{dep}");
            }
        }
        let generate = workflow["metadata"]["generateName"].as_str().unwrap();
        assert!(is_dns1123_label(&format!("{generate}abcde")));
        // Steps are still run under their own names.
        let last = names["pipeline"].as_str();
        assert_eq!(
            template(&workflow, last)["container"]["args"][4],
            "pipeline"
        );
        let first = template(&workflow, "step-1st-pass");
        assert_eq!(first["container"]["args"][4], "_1st_pass");
        assert_eq!(
            strings(&tasks(&workflow)[graph.order.len()]["dependencies"]),
            ["step-1st-pass", "prepare-data-2"],
            "in the order of the steps' own names"
        );
        assert_eq!(
            workflow["spec"]["arguments"]["parameters"][0]["value"],
            "0.1"
        );

        let odd = PipelineSpec::from_yaml("name: ___\nsteps:\n  __: {run: x}\n").unwrap();
        let named = workflow_of(&odd);
        assert_eq!(named["metadata"]["generateName"], "pipeline-");
        assert_eq!(tasks(&named)[1]["name"], "step");
        let long_name = format!("name: {}\nsteps:\n  a: {{run: x}}\n", "n".repeat(100));
        let long_pipeline = workflow_of(&PipelineSpec::from_yaml(&long_name).unwrap());
        let generate = long_pipeline["metadata"]["generateName"].as_str().unwrap();
        assert_eq!(generate.len(), GENERATE_NAME_MAX);
        assert!(is_dns1123_label(&format!("{generate}abcde")));
        let label = long_pipeline["metadata"]["labels"][PIPELINE_LABEL]
            .as_str()
            .unwrap();
        assert!(is_dns1123_label(label));
    }

    fn workflow_of(spec: &PipelineSpec) -> Value {
        workflow(spec, &Graph::of(spec).unwrap(), &options())
    }

    #[test]
    fn yaml_reads_back_the_same_in_yaml_1_1() {
        let (_, _, workflow) = export(
            r#"
name: churn
params: {flag: "yes", when: "2024-01-01", big: "1_000", clock: "1:30", it: "it's"}
env: {SWITCH: "on", LEVEL: "=", PLAIN: "hello", CODE: "010"}
steps:
  "on": {run: "echo ${params.flag}"}
"#,
        );
        let text = to_yaml(&workflow).unwrap();
        for quoted in [
            "'yes'",
            "'2024-01-01'",
            "'1_000'",
            "'1:30'",
            "name: 'on'",
            "'='",
            "- 'on'",
            "'010'",
        ] {
            assert!(text.contains(quoted), "{quoted} in\n{text}");
        }
        assert!(text.contains("value: hello"), "{text}");
        assert!(text.contains("value: it's"), "{text}");
        let back: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, workflow);
        // A document that already holds the placeholder prefix gets another.
        let tricky = json!({"a": "slipwayquoted0z", "b": "no"});
        let text = to_yaml(&tricky).unwrap();
        assert_eq!(yaml_serde::from_str::<Value>(&text).unwrap(), tricky);
        assert!(text.contains("b: 'no'"), "{text}");
    }
}
