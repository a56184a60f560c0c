//! A pipeline file: its name, parameters, and steps, each a command with the paths it reads
//! and writes. Read from YAML, checked whole, with `${params.NAME}` filled in.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;

/// Most steps in one pipeline.
pub const MAX_STEPS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    /// Defaults of the parameters, overridden by `--param k=v`.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Environment every step's process gets (part of every step's cache key).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub steps: BTreeMap<String, StepSpec>,
}

/// A parameter's value: text, a number or a boolean, as YAML writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Param {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::Bool(b) => write!(f, "{b}"),
            Param::Int(i) => write!(f, "{i}"),
            Param::Float(x) => write!(f, "{x}"),
            Param::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The command, run by `sh -c` in the pipeline file's folder.
    pub run: String,
    /// Files and folders (ending in `/`) the step reads: their content is in its cache key,
    /// and a step writing one of them runs first.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Files and folders the step writes: stored in the cache, restored on a hit.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Environment of this step (beside the pipeline's), part of its cache key.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Attempts after a failure (0: fail at once).
    #[serde(default)]
    pub retries: u32,
    /// Seconds the step may run per attempt before it is killed (0: no limit).
    #[serde(default)]
    pub timeout: u64,
}

fn check_name(what: &str, name: &str) -> Result<(), PipelineError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(PipelineError::Invalid(format!(
            "{what} '{name}' must be 1 to 100 letters, digits, '_' or '-'"
        )))
    }
}

/// Whether `path` names something strictly inside the pipeline's folder: relative, no `..`,
/// not the folder itself (`.`, `/`, empty), and not slipway's own `.slipway/`. Restoring an
/// output replaces what is at its path, so this is what keeps a result (possibly from a shared
/// cache) from replacing the folder, or anything outside it.
pub fn is_inside(path: &str) -> bool {
    let p = Path::new(path.trim_end_matches('/'));
    let mut normal = p.components().filter(|c| !matches!(c, Component::CurDir));
    let first = normal.clone().next();
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && first.is_some()
        && first != Some(Component::Normal(".slipway".as_ref()))
        && normal.all(|c| matches!(c, Component::Normal(_)))
}

fn check_path(step: &str, path: &str) -> Result<(), PipelineError> {
    if is_inside(path) {
        Ok(())
    } else {
        Err(PipelineError::Invalid(format!(
            "step '{step}': path '{path}' must name something inside the pipeline's folder (relative, without '..', not the folder itself, not .slipway/)"
        )))
    }
}

impl PipelineSpec {
    pub fn from_yaml(text: &str) -> Result<PipelineSpec, PipelineError> {
        let spec: PipelineSpec =
            yaml_serde::from_str(text).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), PipelineError> {
        check_name("pipeline", &self.name)?;
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(PipelineError::Invalid(format!(
                "a pipeline has 1 to {MAX_STEPS} steps"
            )));
        }
        for name in self.params.keys() {
            check_name("parameter", name)?;
        }
        for (name, step) in &self.steps {
            check_name("step", name)?;
            if step.run.trim().is_empty() {
                return Err(PipelineError::Invalid(format!(
                    "step '{name}': `run` is empty"
                )));
            }
            for path in step.inputs.iter().chain(&step.outputs) {
                check_path(name, path)?;
            }
            if step.outputs.is_empty() {
                // Still cacheable (its key holds), but nothing downstream can depend on it.
            }
            // Every ${params.x} names a parameter.
            interpolate(name, &step.run, &self.params)?;
        }
        Ok(())
    }

    /// The same pipeline with `overrides` (`k=v`) applied to its parameters; an override of a
    /// parameter the file does not declare is refused (a typo would silently change nothing).
    pub fn with_params(
        &self,
        overrides: &[(String, String)],
    ) -> Result<PipelineSpec, PipelineError> {
        let mut spec = self.clone();
        for (key, value) in overrides {
            let Some(slot) = spec.params.get_mut(key) else {
                return Err(PipelineError::Invalid(format!(
                    "--param {key}: the pipeline declares no such parameter (it has {})",
                    self.params.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            *slot = match slot {
                Param::Bool(_) => value.parse().map(Param::Bool).map_err(|_| {
                    PipelineError::Invalid(format!("--param {key}={value}: expected true or false"))
                })?,
                Param::Int(_) => value.parse().map(Param::Int).map_err(|_| {
                    PipelineError::Invalid(format!("--param {key}={value}: expected an integer"))
                })?,
                Param::Float(_) => value.parse().map(Param::Float).map_err(|_| {
                    PipelineError::Invalid(format!("--param {key}={value}: expected a number"))
                })?,
                Param::Text(_) => Param::Text(value.clone()),
            };
        }
        Ok(spec)
    }

    /// A step's command with its parameters filled in.
    pub fn command(&self, step: &str) -> Result<String, PipelineError> {
        let spec = self
            .steps
            .get(step)
            .ok_or_else(|| PipelineError::Invalid(format!("no step '{step}'")))?;
        interpolate(step, &spec.run, &self.params)
    }
}

/// Fills `${params.NAME}`; `$${` is a literal `${`.
pub fn interpolate(
    step: &str,
    text: &str,
    params: &BTreeMap<String, Param>,
) -> Result<String, PipelineError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let close = after.find('}').ok_or_else(|| {
            PipelineError::Invalid(format!("step '{step}': '${{' is never closed in `run`"))
        })?;
        let key = after[..close].trim();
        let name = key.strip_prefix("params.").ok_or_else(|| {
            PipelineError::Invalid(format!(
                "step '{step}': ${{{key}}} is not a parameter (write ${{params.NAME}})"
            ))
        })?;
        let value = params.get(name).ok_or_else(|| {
            PipelineError::Invalid(format!(
                "step '{step}': ${{params.{name}}} names no parameter of the pipeline"
            ))
        })?;
        out.push_str(&value.to_string());
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHURN: &str = r#"
name: churn
params: {n_estimators: 100, tag: "v1"}
steps:
  prepare:
    run: python prepare.py --out data/train.parquet
    inputs: [raw/, prepare.py]
    outputs: [data/train.parquet]
  train:
    run: python train.py --n ${params.n_estimators} --tag ${params.tag}
    inputs: [data/train.parquet, train.py]
    outputs: [model/]
    retries: 2
    timeout: 600
"#;

    #[test]
    fn the_issues_example_reads() {
        let spec = PipelineSpec::from_yaml(CHURN).unwrap();
        assert_eq!(spec.steps.len(), 2);
        assert_eq!(
            spec.command("train").unwrap(),
            "python train.py --n 100 --tag v1"
        );
        let tuned = spec
            .with_params(&[("n_estimators".into(), "300".into())])
            .unwrap();
        assert_eq!(
            tuned.command("train").unwrap(),
            "python train.py --n 300 --tag v1"
        );
        assert_eq!(spec.steps["train"].retries, 2);
    }

    #[test]
    fn mistakes_are_named() {
        let spec = PipelineSpec::from_yaml(CHURN).unwrap();
        let error = spec
            .with_params(&[("n_estimator".into(), "3".into())])
            .unwrap_err();
        assert!(error.to_string().contains("no such parameter"), "{error}");
        let error = spec
            .with_params(&[("n_estimators".into(), "many".into())])
            .unwrap_err();
        assert!(error.to_string().contains("expected an integer"), "{error}");
        for (text, says) in [
            (
                "name: p\nsteps:\n  a: {run: 'echo ${params.x}'}\n",
                "names no parameter",
            ),
            (
                "name: p\nsteps:\n  a: {run: 'echo ${HOME}'}\n",
                "not a parameter",
            ),
            (
                "name: p\nsteps:\n  a: {run: x, inputs: [../secret]}\n",
                "without '..'",
            ),
            (
                "name: p\nsteps:\n  a: {run: x, outputs: [/etc/x]}\n",
                "relative",
            ),
            (
                "name: p\nsteps:\n  a: {run: x, outputs: [/]}\n",
                "not the folder itself",
            ),
            (
                "name: p\nsteps:\n  a: {run: x, outputs: [.]}\n",
                "not the folder itself",
            ),
            (
                "name: p\nsteps:\n  a: {run: x, outputs: ['./']}\n",
                "not the folder itself",
            ),
            (
                "name: p\nsteps:\n  a: {run: x, outputs: [.slipway/cache]}\n",
                "not .slipway/",
            ),
            ("name: p\nsteps: {}\n", "1 to 500 steps"),
            (
                "name: p\nsteps:\n  a: {run: x, output: [y]}\n",
                "unknown field",
            ),
            ("name: p q\nsteps:\n  a: {run: x}\n", "letters, digits"),
        ] {
            let error = PipelineSpec::from_yaml(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn dollar_dollar_is_a_literal() {
        let params = BTreeMap::from([("a".to_owned(), Param::Int(1))]);
        assert_eq!(
            interpolate("s", "echo $${HOME} ${params.a}", &params).unwrap(),
            "echo ${HOME} 1"
        );
    }
}
