//! The DAG a pipeline's paths make: a step that reads what another writes runs after it. Two
//! steps writing the same path, a step reading what it writes, and cycles are refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::error::PipelineError;
use crate::spec::PipelineSpec;

/// A path as steps are compared on it: no leading `./`, no trailing `/`.
fn normal(path: &str) -> &str {
    let mut p = path.trim_end_matches('/');
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p
}

/// Whether one path is the other or inside it.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (normal(a), normal(b));
    a == b
        || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
        || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
}

/// Steps and what each waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Step -> the steps it reads from, each with the paths that join them.
    pub needs: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Every step in an order that runs each after what it needs (ties by name).
    pub order: Vec<String>,
}

impl Graph {
    pub fn of(spec: &PipelineSpec) -> Result<Graph, PipelineError> {
        let steps: Vec<(&String, &crate::spec::StepSpec)> = spec.steps.iter().collect();
        for (i, (a, step_a)) in steps.iter().enumerate() {
            for input in &step_a.inputs {
                if let Some(output) = step_a.outputs.iter().find(|o| overlaps(input, o)) {
                    return Err(PipelineError::Invalid(format!(
                        "step '{a}' reads '{input}' and writes '{output}': a step may not read what it writes (its cache key would change with its own result)"
                    )));
                }
            }
            for (b, step_b) in &steps[i + 1..] {
                for out_a in &step_a.outputs {
                    if let Some(out_b) = step_b.outputs.iter().find(|o| overlaps(out_a, o)) {
                        return Err(PipelineError::Invalid(format!(
                            "steps '{a}' and '{b}' both write '{}': each path has one writer",
                            if out_a.len() <= out_b.len() {
                                out_a
                            } else {
                                out_b
                            }
                        )));
                    }
                }
            }
        }
        let mut needs: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (name, step) in &steps {
            let entry = needs.entry((*name).clone()).or_default();
            for (other, other_step) in &steps {
                if other == name {
                    continue;
                }
                let joined: Vec<String> = step
                    .inputs
                    .iter()
                    .filter(|input| other_step.outputs.iter().any(|o| overlaps(input, o)))
                    .cloned()
                    .collect();
                if !joined.is_empty() {
                    entry.insert((*other).clone(), joined);
                }
            }
        }
        // Kahn's algorithm; what is left over is on a cycle.
        let mut waiting: BTreeMap<&str, usize> =
            needs.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        let mut ready: VecDeque<&str> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut order = Vec::with_capacity(needs.len());
        while let Some(step) = ready.pop_front() {
            order.push(step.to_owned());
            let mut freed = BTreeSet::new();
            for (other, deps) in &needs {
                if deps.contains_key(step) {
                    let left = waiting.get_mut(other.as_str()).map(|n| {
                        *n -= 1;
                        *n
                    });
                    if left == Some(0) {
                        freed.insert(other.as_str());
                    }
                }
            }
            ready.extend(freed);
        }
        if order.len() < needs.len() {
            let stuck: Vec<&str> = waiting
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, _)| *k)
                .collect();
            return Err(PipelineError::Invalid(format!(
                "the steps {} read each other's outputs in a cycle",
                stuck.join(", ")
            )));
        }
        Ok(Graph { needs, order })
    }

    /// Every step that depends on `step`, directly or not.
    pub fn downstream(&self, step: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut queue = vec![step.to_owned()];
        while let Some(current) = queue.pop() {
            for (other, deps) in &self.needs {
                if deps.contains_key(&current) && found.insert(other.clone()) {
                    queue.push(other.clone());
                }
            }
        }
        found
    }

    /// The DAG as a Mermaid flowchart, edges labelled with the paths that join the steps.
    pub fn mermaid(&self, spec: &PipelineSpec) -> String {
        let id: BTreeMap<&str, String> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), format!("s{i}")))
            .collect();
        let mut out = format!("---\ntitle: {}\n---\nflowchart LR\n", spec.name);
        for step in &self.order {
            out.push_str(&format!("  {}[\"{step}\"]\n", id[step.as_str()]));
        }
        for step in &self.order {
            for (dep, paths) in &self.needs[step] {
                let label = paths.join(", ").replace('"', "'");
                out.push_str(&format!(
                    "  {} -->|\"{label}\"| {}\n",
                    id[dep.as_str()],
                    id[step.as_str()]
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> PipelineSpec {
        PipelineSpec::from_yaml(text).unwrap()
    }

    #[test]
    fn paths_overlap_when_one_holds_the_other() {
        assert!(overlaps("data/", "data/train.parquet"));
        assert!(overlaps("./model", "model/"));
        assert!(!overlaps("data/train", "data/training.parquet"));
        assert!(!overlaps("a", "b"));
    }

    #[test]
    fn steps_follow_their_inputs() {
        let s = spec(
            r#"
name: p
steps:
  train: {run: t, inputs: [data/train.parquet], outputs: [model/]}
  prepare: {run: p, inputs: [raw/], outputs: [data/]}
  evaluate: {run: e, inputs: [model/model.onnx, data/test.parquet], outputs: [report.json]}
  lint: {run: l, inputs: [src/]}
"#,
        );
        let graph = Graph::of(&s).unwrap();
        assert_eq!(graph.order, ["lint", "prepare", "train", "evaluate"]);
        assert_eq!(
            graph.needs["evaluate"].keys().collect::<Vec<_>>(),
            ["prepare", "train"]
        );
        assert_eq!(
            graph.downstream("prepare").into_iter().collect::<Vec<_>>(),
            ["evaluate", "train"]
        );
        let mermaid = graph.mermaid(&s);
        assert!(mermaid.contains("flowchart LR"), "{mermaid}");
        assert!(
            mermaid.contains("s1 -->|\"data/train.parquet\"| s2"),
            "{mermaid}"
        );
    }

    #[test]
    fn cycles_and_two_writers_are_refused() {
        let cycle = spec(
            "name: p\nsteps:\n  a: {run: x, inputs: [b.txt], outputs: [a.txt]}\n  b: {run: y, inputs: [a.txt], outputs: [b.txt]}\n",
        );
        let error = Graph::of(&cycle).unwrap_err().to_string();
        assert!(error.contains("cycle") && error.contains("a, b"), "{error}");
        let twice = spec(
            "name: p\nsteps:\n  a: {run: x, outputs: [out/]}\n  b: {run: y, outputs: [out/b.txt]}\n",
        );
        let error = Graph::of(&twice).unwrap_err().to_string();
        assert!(error.contains("both write"), "{error}");
        let own = spec("name: p\nsteps:\n  a: {run: x, inputs: [d/], outputs: [d/x]}\n");
        assert!(Graph::of(&own).unwrap_err().to_string().contains("reads"));
    }
}
