//! The executor with real processes (`sh`) in a temporary folder: what runs, what is restored
//! from the cache, what a change re-runs, retries, timeouts, failures and resuming.

use std::collections::BTreeSet;
use std::path::Path;

use slipway_pipeline::{LocalCache, PipelineSpec, Quiet, RunOptions, StepStatus, run};

/// prepare (raw/ -> data/train.csv) -> train (data/train.csv, train.sh -> model/) -> report;
/// lint on its own. Every step appends its name to ran.log when it actually runs.
const PIPELINE: &str = r#"
name: churn
params: {n: 3}
steps:
  prepare:
    run: echo prepare >> ran.log && mkdir -p data && cat raw/*.csv > data/train.csv
    inputs: [raw/]
    outputs: [data/train.csv]
  train:
    run: echo train >> ran.log && sh train.sh ${params.n}
    inputs: [data/train.csv, train.sh]
    outputs: [model/]
  report:
    run: echo report >> ran.log && wc -l model/weights.txt > report.txt
    inputs: [model/]
    outputs: [report.txt]
  lint:
    run: echo lint >> ran.log && test -f train.sh
    inputs: [train.sh]
"#;

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("raw")).unwrap();
    std::fs::write(dir.path().join("raw/a.csv"), "1\n2\n").unwrap();
    std::fs::write(
        dir.path().join("train.sh"),
        "mkdir -p model && head -n \"$1\" data/train.csv > model/weights.txt\n",
    )
    .unwrap();
    dir
}

fn options(root: &Path) -> RunOptions {
    RunOptions {
        jobs: 2,
        log_dir: root.join(".slipway/logs"),
        ..RunOptions::default()
    }
}

/// Runs the pipeline; returns the steps that ran this time (from ran.log).
fn go(
    root: &Path,
    spec: &PipelineSpec,
    options: &RunOptions,
) -> (slipway_pipeline::RunReport, Vec<String>) {
    let _ = std::fs::remove_file(root.join("ran.log"));
    let cache = LocalCache::new(root.join(".slipway/cache"));
    let report = run(spec, root, &cache, &Quiet, options).unwrap();
    let ran = std::fs::read_to_string(root.join("ran.log")).unwrap_or_default();
    let mut ran: Vec<String> = ran.lines().map(str::to_owned).collect();
    ran.sort();
    (report, ran)
}

#[test]
fn a_second_run_executes_nothing_and_a_change_reruns_only_its_dependents() {
    let dir = workspace();
    let root = dir.path();
    let spec = PipelineSpec::from_yaml(PIPELINE).unwrap();
    let (report, ran) = go(root, &spec, &options(root));
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(ran, ["lint", "prepare", "report", "train"]);
    assert_eq!(
        std::fs::read_to_string(root.join("model/weights.txt")).unwrap(),
        "1\n2\n"
    );

    let (report, ran) = go(root, &spec, &options(root));
    assert!(ran.is_empty(), "nothing changed, nothing runs: {ran:?}");
    assert!(report.steps.iter().all(|s| s.status == StepStatus::Cached));

    // A new raw file: prepare, then what reads its output; lint does not read raw/.
    std::fs::write(root.join("raw/b.csv"), "3\n").unwrap();
    let (_, ran) = go(root, &spec, &options(root));
    assert_eq!(ran, ["prepare", "report", "train"]);

    // train.sh changes what it writes: lint and train read it, and report reads train's output.
    std::fs::write(
        root.join("train.sh"),
        "mkdir -p model && tail -n \"$1\" data/train.csv | sort -r > model/weights.txt\n",
    )
    .unwrap();
    let (_, ran) = go(root, &spec, &options(root));
    assert_eq!(ran, ["lint", "report", "train"]);
    // A change that leaves its output as it was stops there: report reads the same weights.
    std::fs::write(
        root.join("train.sh"),
        "mkdir -p model\ntail -n \"$1\" data/train.csv | sort -r > model/weights.txt\n",
    )
    .unwrap();
    let (_, ran) = go(root, &spec, &options(root));
    assert_eq!(ran, ["lint", "train"]);

    // A parameter is part of the key of the step that uses it.
    let fewer = spec.with_params(&[("n".into(), "1".into())]).unwrap();
    let (_, ran) = go(root, &fewer, &options(root));
    assert_eq!(ran, ["report", "train"]);
    assert_eq!(
        std::fs::read_to_string(root.join("model/weights.txt")).unwrap(),
        "3\n"
    );
    // Back to n = 3: both results are stored, so the outputs come back without running.
    let (report, ran) = go(root, &spec, &options(root));
    assert!(ran.is_empty(), "{ran:?}");
    assert!(report.succeeded());
    assert_eq!(
        std::fs::read_to_string(root.join("model/weights.txt")).unwrap(),
        "3\n2\n1\n"
    );
}

#[test]
fn deleted_outputs_are_restored_from_the_cache_and_force_runs_a_step() {
    let dir = workspace();
    let root = dir.path();
    let spec = PipelineSpec::from_yaml(PIPELINE).unwrap();
    go(root, &spec, &options(root));
    std::fs::remove_dir_all(root.join("model")).unwrap();
    std::fs::write(root.join("report.txt"), "tampered").unwrap();
    let (_, ran) = go(root, &spec, &options(root));
    assert!(ran.is_empty(), "{ran:?}");
    assert!(root.join("model/weights.txt").exists());
    assert_ne!(
        std::fs::read_to_string(root.join("report.txt")).unwrap(),
        "tampered"
    );
    let forced = RunOptions {
        force: BTreeSet::from(["train".to_owned()]),
        ..options(root)
    };
    let (_, ran) = go(root, &spec, &forced);
    // train runs; it writes the same weights, so report's key is unchanged and it is restored.
    assert_eq!(ran, ["train"]);
}

#[test]
fn a_failed_step_skips_its_dependents_and_a_rerun_resumes_there() {
    let dir = workspace();
    let root = dir.path();
    std::fs::write(root.join("train.sh"), "exit 3\n").unwrap();
    let spec = PipelineSpec::from_yaml(PIPELINE).unwrap();
    let (report, ran) = go(root, &spec, &options(root));
    assert!(!report.succeeded());
    assert_eq!(ran, ["lint", "prepare", "train"]);
    let by_step = |name: &str| {
        report
            .steps
            .iter()
            .find(|s| s.step == name)
            .unwrap()
            .status
            .clone()
    };
    match by_step("train") {
        StepStatus::Failed { attempts, reason } => {
            assert_eq!(attempts, 1);
            assert!(reason.contains("status 3"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(by_step("report"), StepStatus::Skipped { .. }));
    let log = std::fs::read_to_string(root.join(".slipway/logs/train.log")).unwrap();
    assert!(log.contains("--- attempt 1"), "{log}");

    std::fs::write(
        root.join("train.sh"),
        "mkdir -p model && head -n \"$1\" data/train.csv > model/weights.txt\n",
    )
    .unwrap();
    let (report, ran) = go(root, &spec, &options(root));
    assert!(report.succeeded());
    // prepare's result is reused: the run picks up at the step that failed.
    assert_eq!(ran, ["lint", "report", "train"]);
}

#[test]
fn retries_timeouts_and_missing_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spec = PipelineSpec::from_yaml(
        r#"
name: flaky
steps:
  flaky:
    run: echo x >> tries && test "$(wc -l < tries)" -ge 3 && echo ok > out.txt
    outputs: [out.txt]
    retries: 2
  slow:
    run: sleep 30 & sleep 30
    timeout: 1
  liar:
    run: "true"
    outputs: [never.txt]
"#,
    )
    .unwrap();
    let (report, _) = go(root, &spec, &options(root));
    let status = |name: &str| {
        report
            .steps
            .iter()
            .find(|s| s.step == name)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(status("flaky"), StepStatus::Ran { attempts: 3 });
    match status("slow") {
        StepStatus::Failed { reason, .. } => {
            assert!(reason.contains("timed out after 1 s"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match status("liar") {
        StepStatus::Failed { reason, .. } => {
            assert!(
                reason.contains("did not write its output 'never.txt'"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn independent_steps_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Each waits until the other has started: run one after the other, they would time out.
    let spec = PipelineSpec::from_yaml(
        r#"
name: parallel
steps:
  a: {run: "touch a.started; while [ ! -f b.started ]; do sleep 0.05; done", timeout: 10}
  b: {run: "touch b.started; while [ ! -f a.started ]; do sleep 0.05; done", timeout: 10}
"#,
    )
    .unwrap();
    let (report, _) = go(root, &spec, &options(root));
    assert!(report.succeeded(), "{report:#?}");
    let one_job = RunOptions {
        jobs: 1,
        force: BTreeSet::from(["a".to_owned(), "b".to_owned()]),
        ..options(root)
    };
    std::fs::remove_file(root.join("a.started")).unwrap();
    std::fs::remove_file(root.join("b.started")).unwrap();
    let spec_short = PipelineSpec::from_yaml(
        r#"
name: parallel
steps:
  a: {run: "touch a.started; while [ ! -f b.started ]; do sleep 0.05; done", timeout: 1}
  b: {run: "touch b.started; while [ ! -f a.started ]; do sleep 0.05; done", timeout: 1}
"#,
    )
    .unwrap();
    let (report, _) = go(root, &spec_short, &one_job);
    assert!(
        !report.succeeded(),
        "with one job the first waits for the second in vain"
    );
}

#[test]
fn one_step_alone_runs_on_what_its_inputs_hold() {
    let dir = workspace();
    let root = dir.path();
    let spec = PipelineSpec::from_yaml(PIPELINE).unwrap();
    let only = |step: &str| RunOptions {
        only: Some(step.to_owned()),
        ..options(root)
    };
    // train's input does not exist yet: it fails, naming it.
    let (report, ran) = go(root, &spec, &only("train"));
    assert!(ran.is_empty());
    match &report.steps[0].status {
        StepStatus::Failed { reason, .. } => assert!(reason.contains("data/train.csv"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let (report, ran) = go(root, &spec, &only("prepare"));
    assert!(report.succeeded() && report.steps.len() == 1);
    assert_eq!(ran, ["prepare"]);
    let (_, ran) = go(root, &spec, &only("train"));
    assert_eq!(ran, ["train"]);
    // The whole pipeline then finds both in the cache.
    let (_, ran) = go(root, &spec, &options(root));
    assert_eq!(ran, ["lint", "report"]);
    let cache = LocalCache::new(root.join(".slipway/cache"));
    let error = run(&spec, root, &cache, &Quiet, &only("nope")).unwrap_err();
    assert!(error.to_string().contains("no such step"), "{error}");
}

#[test]
fn a_stored_result_naming_other_paths_is_run_again_not_restored() {
    let dir = workspace();
    let root = dir.path();
    let spec = PipelineSpec::from_yaml(PIPELINE).unwrap();
    go(root, &spec, &options(root));
    // Someone who may write the cache rewrites train's result so that restoring it would
    // write over a file outside train's output.
    let victim = root.join("raw/a.csv");
    let original = std::fs::read_to_string(&victim).unwrap();
    let results = root.join(".slipway/cache/results");
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        let mut result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if result["step"] == "train" {
            result["outputs"]["model/"][0]["path"] = serde_json::json!("raw/a.csv");
            std::fs::write(&path, result.to_string()).unwrap();
        }
    }
    std::fs::remove_dir_all(root.join("model")).unwrap();
    let (report, ran) = go(root, &spec, &options(root));
    assert!(report.succeeded(), "{report:#?}");
    assert!(ran.contains(&"train".to_owned()), "{ran:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), original);
}
