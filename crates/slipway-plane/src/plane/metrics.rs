//! Prometheus metrics of managed deployments, per deployment, variant and model version (names
//! in `docs/specs/metrics.md`). Label values are deployment names, `stable`/`candidate` and
//! version numbers: bounded by what is deployed, never by what clients send.
//!
//! Each served revision resolves its metric handles once ([`Handles`]), so a request updates
//! counters without building label sets.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use slipway_core::deployment::{BreakerState, Deployment, Variant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub deployment: String,
    /// `mlflow` or `v2`.
    pub protocol: &'static str,
    /// `ok`, `client_error`, `server_error`, `shed`, `timeout`, `not_found`, `not_ready`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabels {
    pub deployment: String,
    pub variant: &'static str,
    pub model_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantOutcomeLabels {
    pub deployment: String,
    pub variant: &'static str,
    pub model_version: String,
    /// `ok`, `error` (the model failed), `fallback` (failed, answered by stable),
    /// `circuit_open` (routed here, answered by stable because the circuit was open; not the
    /// variant's error, and not counted by the rollout analysis).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub deployment: String,
    pub variant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub deployment: String,
    pub outcome: &'static str,
}

pub struct PlaneMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<DeploymentLabels, Histogram>,
    in_flight: Family<DeploymentLabels, Gauge<i64, AtomicI64>>,
    variant_requests: Family<VariantOutcomeLabels, Counter>,
    variant_duration: Family<VariantLabels, Histogram>,
    inference: Family<VariantLabels, Histogram>,
    batch_rows: Family<VariantLabels, Histogram>,
    circuit: Family<CircuitLabels, Gauge<i64, AtomicI64>>,
    weight: Family<DeploymentLabels, Gauge<i64, AtomicI64>>,
    mirrored: Family<OutcomeLabels, Counter>,
    rescored: Family<OutcomeLabels, Counter>,
    log: Family<OutcomeLabels, Counter>,
    log_write_failures: Counter,
    log_queued: Gauge<i64, AtomicI64>,
}

impl Default for PlaneMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slipway_serving");
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration =
            Family::<DeploymentLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        let in_flight = Family::<DeploymentLabels, Gauge<i64, AtomicI64>>::default();
        let variant_requests = Family::<VariantOutcomeLabels, Counter>::default();
        let variant_duration =
            Family::<VariantLabels, Histogram>::new_with_constructor(latency as fn() -> _);
        let inference = Family::<VariantLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.00001, 2.0, 20))) as fn() -> _,
        );
        let batch_rows = Family::<VariantLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1.0, 2.0, 14))) as fn() -> _,
        );
        let circuit = Family::<CircuitLabels, Gauge<i64, AtomicI64>>::default();
        let weight = Family::<DeploymentLabels, Gauge<i64, AtomicI64>>::default();
        let mirrored = Family::<OutcomeLabels, Counter>::default();
        let rescored = Family::<OutcomeLabels, Counter>::default();
        let log = Family::<OutcomeLabels, Counter>::default();
        let log_write_failures = Counter::default();
        let log_queued = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "deployment_requests",
            "Inference requests to a deployment, by protocol and outcome (shed, timeout included)",
            requests.clone(),
        );
        registry.register(
            "deployment_request_duration_seconds",
            "Time from request to response of a deployment's inference requests",
            request_duration.clone(),
        );
        registry.register(
            "deployment_in_flight_requests",
            "Inference requests a deployment is handling now",
            in_flight.clone(),
        );
        registry.register(
            "variant_requests",
            "Requests a variant ran, by outcome (ok, error, fallback to stable)",
            variant_requests.clone(),
        );
        registry.register(
            "variant_request_duration_seconds",
            "Time a variant took to answer, parsing to prediction",
            variant_duration.clone(),
        );
        registry.register(
            "variant_inference_duration_seconds",
            "Time the model run took that answered a request",
            inference.clone(),
        );
        registry.register(
            "variant_batch_rows",
            "Rows in the model run that answered a request (micro-batches merge requests)",
            batch_rows.clone(),
        );
        registry.register(
            "circuit_state",
            "Circuit breaker per variant: 0 closed, 1 open (traffic to stable), 2 half-open",
            circuit.clone(),
        );
        registry.register(
            "candidate_weight_percent",
            "Share of live traffic the candidate answers",
            weight.clone(),
        );
        registry.register(
            "mirrored_requests",
            "Requests copied to the candidate (compared, error, skipped at the mirror limit)",
            mirrored.clone(),
        );
        registry.register(
            "rescored_requests",
            "Candidate answers run again on the stable and compared row by row (compared, error, skipped when the re-score limit is reached)",
            rescored.clone(),
        );
        registry.register(
            "prediction_log_records",
            "Prediction log records, queued or dropped because the queue was full",
            log.clone(),
        );
        registry.register(
            "prediction_log_queued_values",
            "Values (inputs and outputs) in prediction log records waiting to be written",
            log_queued.clone(),
        );
        registry.register(
            "prediction_log_write_failures",
            "Prediction log records lost because the store refused the write",
            log_write_failures.clone(),
        );
        PlaneMetrics {
            registry,
            requests,
            request_duration,
            in_flight,
            variant_requests,
            variant_duration,
            inference,
            batch_rows,
            circuit,
            weight,
            mirrored,
            rescored,
            log,
            log_write_failures,
            log_queued,
        }
    }
}

/// One variant's metric handles.
#[derive(Clone)]
pub struct VariantHandles {
    pub ok: Counter,
    pub error: Counter,
    pub fallback: Counter,
    pub diverted: Counter,
    pub duration: Histogram,
    pub inference: Histogram,
    pub batch_rows: Histogram,
    pub circuit: Gauge<i64, AtomicI64>,
}

/// A served revision's metric handles.
#[derive(Clone)]
pub struct Handles {
    pub duration: Histogram,
    pub in_flight: Gauge<i64, AtomicI64>,
    pub stable: VariantHandles,
    pub candidate: Option<VariantHandles>,
    /// Outcomes by protocol: `[mlflow, v2]` x outcome.
    requests: Vec<(&'static str, &'static str, Counter)>,
}

const OUTCOMES: [&str; 7] = [
    "ok",
    "client_error",
    "server_error",
    "shed",
    "timeout",
    "not_found",
    "not_ready",
];

impl Handles {
    pub fn variant(&self, variant: Variant) -> &VariantHandles {
        match variant {
            Variant::Candidate => self.candidate.as_ref().unwrap_or(&self.stable),
            Variant::Stable => &self.stable,
        }
    }

    pub fn request(&self, protocol: &'static str, outcome: &'static str) {
        if let Some((_, _, counter)) = self
            .requests
            .iter()
            .find(|(p, o, _)| *p == protocol && *o == outcome)
        {
            counter.inc();
        }
    }
}

impl PlaneMetrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The metrics without the closing `# EOF`, for a document that carries more.
    pub fn encode_into(&self, text: &mut String) {
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(text, &self.registry);
    }

    fn variant(&self, deployment: &str, variant: Variant, version: &str) -> VariantHandles {
        let labels = VariantLabels {
            deployment: deployment.to_owned(),
            variant: variant.as_str(),
            model_version: version.to_owned(),
        };
        let outcome = |outcome: &'static str| {
            self.variant_requests
                .get_or_create(&VariantOutcomeLabels {
                    deployment: deployment.to_owned(),
                    variant: variant.as_str(),
                    model_version: version.to_owned(),
                    outcome,
                })
                .clone()
        };
        VariantHandles {
            ok: outcome("ok"),
            error: outcome("error"),
            fallback: outcome("fallback"),
            diverted: outcome("circuit_open"),
            duration: self.variant_duration.get_or_create(&labels).clone(),
            inference: self.inference.get_or_create(&labels).clone(),
            batch_rows: self.batch_rows.get_or_create(&labels).clone(),
            circuit: self
                .circuit
                .get_or_create(&CircuitLabels {
                    deployment: deployment.to_owned(),
                    variant: variant.as_str(),
                })
                .clone(),
        }
    }

    pub fn handles(&self, spec: &Deployment) -> Handles {
        let deployment = DeploymentLabels {
            deployment: spec.name.clone(),
        };
        self.weight
            .get_or_create(&deployment)
            .set(i64::from(spec.traffic().weight));
        let mut requests = Vec::new();
        for protocol in ["mlflow", "v2"] {
            for outcome in OUTCOMES {
                requests.push((
                    protocol,
                    outcome,
                    self.requests
                        .get_or_create(&RequestLabels {
                            deployment: spec.name.clone(),
                            protocol,
                            outcome,
                        })
                        .clone(),
                ));
            }
        }
        let candidate = spec
            .candidate_version()
            .map(|version| self.variant(&spec.name, Variant::Candidate, version));
        if candidate.is_none() {
            // No candidate: its circuit is closed, whatever it was.
            self.circuit
                .get_or_create(&CircuitLabels {
                    deployment: spec.name.clone(),
                    variant: Variant::Candidate.as_str(),
                })
                .set(BreakerState::Closed.gauge());
        }
        Handles {
            duration: self.request_duration.get_or_create(&deployment).clone(),
            in_flight: self.in_flight.get_or_create(&deployment).clone(),
            stable: self.variant(&spec.name, Variant::Stable, &spec.stable_version),
            candidate,
            requests,
        }
    }

    /// A request to a deployment this process does not serve (label: the fixed `unknown`, so
    /// clients cannot grow the label set).
    pub fn unknown(&self, protocol: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                deployment: "unknown".to_owned(),
                protocol,
                outcome: "not_found",
            })
            .inc();
    }

    pub fn mirrored(&self, deployment: &str, outcome: &'static str) {
        self.mirrored
            .get_or_create(&OutcomeLabels {
                deployment: deployment.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn rescored(&self, deployment: &str, outcome: &'static str) {
        self.rescored
            .get_or_create(&OutcomeLabels {
                deployment: deployment.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn prediction_log(&self, deployment: &str, outcome: &'static str) {
        self.log
            .get_or_create(&OutcomeLabels {
                deployment: deployment.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn prediction_log_queue(&self, values: usize) {
        self.log_queued
            .set(i64::try_from(values).unwrap_or(i64::MAX));
    }

    pub fn prediction_log_failed(&self, records: u64) {
        self.log_write_failures.inc_by(records);
    }
}
