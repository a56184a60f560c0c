//! Running a pipeline: steps in the DAG's order, independent ones at once (up to `jobs`), each
//! either restored from the cache (its key has a stored result) or run by `sh -c` in the
//! pipeline's folder, with retries and a timeout per attempt. A step whose upstream failed is
//! skipped; the others go on, so a re-run after a fix resumes where it failed (what succeeded
//! is in the cache).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cache::{self, CacheStore, FileDigest, StepResult};
use crate::error::PipelineError;
use crate::graph::Graph;
use crate::spec::PipelineSpec;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Steps run at once (at least 1).
    pub jobs: usize,
    /// Steps run even when their key has a stored result.
    pub force: BTreeSet<String>,
    /// Environment every step gets beside the pipeline's (not part of any key: where to
    /// track, not what to compute).
    pub env: BTreeMap<String, String>,
    /// Where each step's log is written (`<dir>/<step>.log`).
    pub log_dir: PathBuf,
    /// Run this one step only, with whatever its inputs hold now: how an engine that runs each
    /// step in its own container (Argo) runs a pipeline, its steps ordered by the engine and
    /// sharing this cache.
    pub only: Option<String>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// Its key had a stored result: outputs restored, nothing run.
    Cached,
    Ran {
        attempts: u32,
    },
    Failed {
        attempts: u32,
        reason: String,
    },
    /// A step it needs failed.
    Skipped {
        because: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: String,
    #[serde(flatten)]
    pub status: StepStatus,
    /// None when the step never got as far as computing it (skipped, or an input missing).
    pub key: Option<String>,
    pub command: String,
    /// Input path -> its files' digests.
    pub inputs: BTreeMap<String, Vec<FileDigest>>,
    pub result: Option<StepResult>,
    pub log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Cached | StepStatus::Ran { .. }))
    }

    pub fn executed(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Ran { .. } | StepStatus::Failed { .. }))
            .map(|s| s.step.as_str())
            .collect()
    }
}

/// What the caller does around steps: tracking them as runs, showing progress.
pub trait Observer: Sync {
    /// A step is about to run (not restored); returns environment for its process (e.g. the
    /// run to log into).
    fn starting(&self, _step: &str, _key: &str) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// A step ended, however.
    fn finished(&self, _report: &StepReport) {}
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs `spec` in `root` (the pipeline file's folder).
pub fn run(
    spec: &PipelineSpec,
    root: &Path,
    cache: &dyn CacheStore,
    observer: &dyn Observer,
    options: &RunOptions,
) -> Result<RunReport, PipelineError> {
    let graph = Graph::of(spec)?;
    for step in &options.force {
        if !spec.steps.contains_key(step) {
            return Err(PipelineError::Invalid(format!(
                "--force {step}: the pipeline has no such step"
            )));
        }
    }
    std::fs::create_dir_all(&options.log_dir)
        .map_err(|e| PipelineError::Io(format!("creating {}: {e}", options.log_dir.display())))?;
    if let Some(step) = &options.only {
        if !spec.steps.contains_key(step) {
            return Err(PipelineError::Invalid(format!(
                "--only {step}: the pipeline has no such step (it has {})",
                graph.order.join(", ")
            )));
        }
        let report = one_step(spec, root, cache, observer, options, step);
        observer.finished(&report);
        return Ok(RunReport {
            pipeline: spec.name.clone(),
            steps: vec![report],
        });
    }
    let jobs = options.jobs.max(1);
    let mut done: BTreeMap<String, StepReport> = BTreeMap::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let (sender, receiver) = mpsc::channel::<StepReport>();
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        loop {
            // Steps whose needs are all settled: skip those downstream of a failure, start the
            // rest while there is room.
            for step in &graph.order {
                if done.contains_key(step) || running.contains(step) {
                    continue;
                }
                let needs = &graph.needs[step];
                if !needs.keys().all(|n| done.contains_key(n)) {
                    continue;
                }
                if let Some(failed) = needs.keys().find(|n| {
                    !matches!(done[*n].status, StepStatus::Cached | StepStatus::Ran { .. })
                }) {
                    let report = StepReport {
                        step: step.clone(),
                        status: StepStatus::Skipped {
                            because: format!("step '{failed}' did not succeed"),
                        },
                        key: None,
                        command: spec.command(step)?,
                        inputs: BTreeMap::new(),
                        result: None,
                        log: None,
                    };
                    observer.finished(&report);
                    done.insert(step.clone(), report);
                    continue;
                }
                if running.len() >= jobs {
                    break;
                }
                running.insert(step.clone());
                let sender = sender.clone();
                let step = step.clone();
                scope.spawn(move || {
                    let report = one_step(spec, root, cache, observer, options, &step);
                    observer.finished(&report);
                    // The receiver outlives every step thread.
                    let _ = sender.send(report);
                });
            }
            if running.is_empty() {
                break;
            }
            let report = receiver
                .recv()
                .map_err(|_| PipelineError::Io("a step thread ended without a report".into()))?;
            running.remove(&report.step);
            done.insert(report.step.clone(), report);
        }
        Ok(())
    })?;
    Ok(RunReport {
        pipeline: spec.name.clone(),
        steps: graph.order.iter().filter_map(|s| done.remove(s)).collect(),
    })
}

fn one_step(
    spec: &PipelineSpec,
    root: &Path,
    cache: &dyn CacheStore,
    observer: &dyn Observer,
    options: &RunOptions,
    step: &str,
) -> StepReport {
    let step_spec = &spec.steps[step];
    let command = spec.command(step).unwrap_or_else(|_| step_spec.run.clone());
    let mut report = StepReport {
        step: step.to_owned(),
        status: StepStatus::Failed {
            attempts: 0,
            reason: String::new(),
        },
        key: None,
        command: command.clone(),
        inputs: BTreeMap::new(),
        result: None,
        log: None,
    };
    let fail = |mut report: StepReport, attempts: u32, reason: String| {
        report.status = StepStatus::Failed { attempts, reason };
        report
    };
    for input in &step_spec.inputs {
        match cache::digest_path(root, input) {
            Ok(Some(files)) => {
                report.inputs.insert(input.clone(), files);
            }
            Ok(None) => {
                return fail(report, 0, format!("its input '{input}' does not exist"));
            }
            Err(error) => return fail(report, 0, error.to_string()),
        }
    }
    let mut env = spec.env.clone();
    env.extend(step_spec.env.clone());
    let key = cache::cache_key(&command, &env, &step_spec.outputs, &report.inputs);
    report.key = Some(key.clone());
    if !options.force.contains(step) {
        match cache.get_result(&key) {
            Ok(Some(result)) => match trusted(&result, &step_spec.outputs)
                .and_then(|()| restore(root, cache, &result))
            {
                Ok(()) => {
                    report.status = StepStatus::Cached;
                    report.result = Some(result);
                    return report;
                }
                Err(error) => {
                    // A result whose objects are gone is run again, not trusted.
                    eprintln!(
                        "step '{step}': cannot restore its cached outputs ({error}); running it"
                    );
                }
            },
            Ok(None) => {}
            Err(error) => return fail(report, 0, error.to_string()),
        }
    }
    let log = options.log_dir.join(format!("{step}.log"));
    report.log = Some(log.clone());
    let extra = observer.starting(step, &key);
    let started = Instant::now();
    let mut attempts = 0;
    let mut last_failure = String::new();
    while attempts <= step_spec.retries {
        attempts += 1;
        match attempt(
            root,
            &command,
            &env,
            &options.env,
            &extra,
            &log,
            attempts,
            step_spec.timeout,
        ) {
            Ok(()) => {
                last_failure.clear();
                break;
            }
            Err(why) => last_failure = why,
        }
    }
    if !last_failure.is_empty() {
        return fail(report, attempts, last_failure);
    }
    match store(root, cache, step, &key, &step_spec.outputs, &log, started) {
        Ok(result) => {
            report.status = StepStatus::Ran { attempts };
            report.result = Some(result);
            report
        }
        Err(error) => fail(report, attempts, error.to_string()),
    }
}

/// One attempt: the command under `sh -c`, its output appended to the log, killed (with
/// everything it started) at the timeout.
#[allow(clippy::too_many_arguments)]
fn attempt(
    root: &Path,
    command: &str,
    env: &BTreeMap<String, String>,
    run_env: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
    log: &Path,
    number: u32,
    timeout_s: u64,
) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(number > 1)
        .write(true)
        .truncate(number == 1)
        .open(log)
        .map_err(|e| format!("cannot write its log {}: {e}", log.display()))?;
    let _ = writeln!(file, "--- attempt {number}: {command}");
    let stderr = file
        .try_clone()
        .map_err(|e| format!("cannot write its log {}: {e}", log.display()))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(root)
        .envs(env)
        .envs(run_env)
        .envs(extra)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        // Its own process group, so a timeout kills what the shell started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    let deadline = (timeout_s > 0).then(|| Instant::now() + Duration::from_secs(timeout_s));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(match status.code() {
                    Some(code) => format!("exited with status {code} (see {})", log.display()),
                    None => format!("was killed by a signal (see {})", log.display()),
                });
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {timeout_s} s and was killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stores what a step wrote; a declared output it did not write fails the step.
fn store(
    root: &Path,
    cache: &dyn CacheStore,
    step: &str,
    key: &str,
    outputs: &[String],
    log: &Path,
    started: Instant,
) -> Result<StepResult, PipelineError> {
    let mut stored = BTreeMap::new();
    for output in outputs {
        let Some(files) = cache::digest_path(root, output)? else {
            return Err(PipelineError::Invalid(format!(
                "it succeeded but did not write its output '{output}'"
            )));
        };
        for file in &files {
            cache.put_object(&file.sha256, &root.join(&file.path))?;
        }
        stored.insert(output.clone(), files);
    }
    let log_digest = match cache::file_sha256(log) {
        Ok((sha256, size)) => {
            cache.put_object(&sha256, log)?;
            Some(FileDigest {
                path: format!("{step}.log"),
                sha256,
                size,
            })
        }
        Err(_) => None,
    };
    let result = StepResult {
        key: key.to_owned(),
        step: step.to_owned(),
        outputs: stored,
        log: log_digest,
        duration_ms: started.elapsed().as_millis() as u64,
        finished_ms: now_ms(),
    };
    cache.put_result(&result)?;
    Ok(result)
}

/// Whether a stored result is one this step could have written: exactly its declared outputs,
/// each file inside its output. A result comes from a cache others may write (the server's):
/// restoring one that named other paths would replace files anywhere.
fn trusted(result: &StepResult, outputs: &[String]) -> Result<(), PipelineError> {
    let declared: BTreeSet<&str> = outputs.iter().map(String::as_str).collect();
    let stored: BTreeSet<&str> = result.outputs.keys().map(String::as_str).collect();
    if declared != stored {
        return Err(PipelineError::Invalid(format!(
            "the stored result names outputs {stored:?}, not the step's {declared:?}"
        )));
    }
    for (output, files) in &result.outputs {
        for file in files {
            if !crate::spec::is_inside(&file.path) || !crate::graph::overlaps(&file.path, output) {
                return Err(PipelineError::Invalid(format!(
                    "the stored result puts '{}' outside its output '{output}'",
                    file.path
                )));
            }
        }
    }
    Ok(())
}

/// Puts a stored result's outputs in place: each output path replaced by exactly its files.
fn restore(root: &Path, cache: &dyn CacheStore, result: &StepResult) -> Result<(), PipelineError> {
    for (output, files) in &result.outputs {
        let current = cache::digest_path(root, output)?;
        if current.as_ref() == Some(files) {
            continue;
        }
        let path = root.join(output.trim_end_matches('/'));
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| PipelineError::Io(format!("replacing {}: {e}", path.display())))?;
        }
        if files.is_empty() && output.ends_with('/') {
            std::fs::create_dir_all(&path)
                .map_err(|e| PipelineError::Io(format!("creating {}: {e}", path.display())))?;
        }
        for file in files {
            cache.get_object(&file.sha256, &root.join(&file.path))?;
        }
    }
    Ok(())
}
