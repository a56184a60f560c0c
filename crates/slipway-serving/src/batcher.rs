//! Dynamic micro-batching: many concurrent requests' rows merged into one model run.
//!
//! Requests go through a bounded queue to one collector task. A batch opens with the first
//! request and closes when it holds `max_batch_rows` rows or `max_wait` has passed since that
//! request arrived. A closed batch then waits for one of `concurrent_batches` slots (as many
//! as the model has sessions, so a slot means a free session), and keeps taking requests that
//! fit while it waits: under load batches grow by themselves, and with `max_wait` zero a
//! request waits only while every session is busy. The batch runs on a blocking thread with
//! [`OnnxModel::predict_rows`], and each caller gets back its own rows' outputs.
//!
//! One request's mistake never fails another's: a request whose rows do not fit the model is
//! refused in [`Batcher::submit`] before it joins a batch, and if a merged run fails anyway (or
//! its outputs cannot be split by rows) every request in it is run again on its own.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::{ModelError, OnnxModel, Output};

/// How requests are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// A batch closes as soon as it holds this many rows. A request with more rows runs alone,
    /// at once: it is never split across batches.
    pub max_batch_rows: usize,
    /// The longest a batch stays open for more requests after its first arrived: the most a
    /// lone request can be delayed by batching when a session is free. Zero merges only
    /// requests that arrive while every session is busy.
    pub max_wait: Duration,
    /// Requests waiting to join a batch; one more is refused at once with
    /// [`BatchError::Full`] rather than queued without limit.
    pub queue_capacity: usize,
    /// Batches running at once; set it to the model's session pool size (more would only wait
    /// for a session on a blocking thread, fewer leaves sessions idle).
    pub concurrent_batches: usize,
}

impl Default for BatchConfig {
    /// Small tabular models: a 2 ms window costs little next to an HTTP request and merges
    /// well at a few thousand requests per second.
    fn default() -> Self {
        BatchConfig {
            max_batch_rows: 256,
            max_wait: Duration::from_millis(2),
            queue_capacity: 1024,
            concurrent_batches: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the batch queue is full")]
    Full,
    #[error("the batcher has shut down")]
    Closed,
    /// The request's own outcome: [`ModelError::BadInput`] for rows that do not fit the
    /// model, another variant when the model failed on them.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The thread running the batch stopped without answering (a panic in the runtime).
    #[error("the batch running this request stopped before answering")]
    Lost,
}

/// One request's answer, with what the caller needs to report about the run it was part of.
#[derive(Debug, Clone, PartialEq)]
pub struct Batched {
    /// The outputs for this request's rows only, in its order.
    pub outputs: Vec<Output>,
    /// Rows in the model run that answered this request (this request's and others').
    pub batch_rows: usize,
    /// Requests in that run.
    pub batch_requests: usize,
    /// From submission until the run started: time spent waiting for the batch to close and
    /// for a session.
    pub queued: Duration,
    /// The model run's own time.
    pub inference: Duration,
    /// This request's share (by rows) of the CPU time the run took.
    pub cpu: Duration,
    /// True for exactly one of the requests a run answered, so per-run figures (batch rows,
    /// inference time) can be recorded once per run rather than once per request.
    pub reports_run: bool,
}

/// Merges concurrent requests into batched model runs; see the module docs. Share it behind
/// an `Arc`; dropping the last handle (or [`Batcher::shutdown`]) stops taking requests and
/// lets those already submitted finish.
pub struct Batcher {
    model: Arc<OnnxModel>,
    config: BatchConfig,
    queue: mpsc::Sender<Request>,
    /// The collector, awaited by [`Batcher::shutdown`].
    collector: JoinHandle<()>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A submitted request on its way to a batch.
struct Request {
    rows: Vec<Vec<f32>>,
    /// Width of every row, checked at submission; requests of different widths (a model with
    /// a dynamic width) are never merged.
    width: usize,
    arrived: Instant,
    reply: oneshot::Sender<Result<Batched, BatchError>>,
}

impl Request {
    /// The caller stopped waiting (timed out, disconnected): its rows need not run.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

impl Batcher {
    /// Starts the collector task; call it inside a tokio runtime.
    pub fn new(model: Arc<OnnxModel>, config: BatchConfig) -> Batcher {
        // Out-of-range sizes would make tokio's channel and semaphore panic.
        let config = BatchConfig {
            max_batch_rows: config.max_batch_rows.max(1),
            queue_capacity: config.queue_capacity.clamp(1, Semaphore::MAX_PERMITS),
            concurrent_batches: config.concurrent_batches.clamp(1, u32::MAX as usize),
            ..config
        };
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        let collector = tokio::spawn(collect(receiver, model.clone(), config));
        Batcher {
            model,
            config,
            queue,
            collector,
        }
    }

    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Runs `rows` in the next batch; the future resolves to their outputs. Rows that do not
    /// fit the model are refused here, before they can fail anyone else's batch, and a full
    /// queue is refused at once (both through the future, which is then ready).
    ///
    /// The request joins the queue when this is called, not when the future is first polled,
    /// and the future does not borrow the batcher: the batcher may be shut down or dropped
    /// while answers are awaited, and they still come. Dropping the future (a timeout) is
    /// safe: the request is left out of its batch if it has not started, and the batch runs on
    /// without it if it has.
    pub fn submit(
        &self,
        rows: Vec<Vec<f32>>,
    ) -> impl Future<Output = Result<Batched, BatchError>> + Send + 'static {
        let queued = self.enqueue(rows);
        async move { queued?.await.map_err(|_| BatchError::Lost)? }
    }

    fn enqueue(
        &self,
        rows: Vec<Vec<f32>>,
    ) -> Result<oneshot::Receiver<Result<Batched, BatchError>>, BatchError> {
        let width = self.model.check_rows(&rows)?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            rows,
            width,
            arrived: Instant::now(),
            reply,
        };
        self.queue.try_send(request).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => BatchError::Full,
            mpsc::error::TrySendError::Closed(_) => BatchError::Closed,
        })?;
        Ok(answer)
    }

    /// Stops taking requests and waits until every request submitted so far is answered.
    pub async fn shutdown(self) {
        let Batcher {
            queue, collector, ..
        } = self;
        drop(queue);
        // The collector only ends by itself; a panic in it has nothing left to clean up.
        let _ = collector.await;
    }
}

/// A batch being filled.
struct Batch {
    requests: Vec<Request>,
    rows: usize,
    width: usize,
}

impl Batch {
    fn new(first: Request) -> Batch {
        Batch {
            rows: first.rows.len(),
            width: first.width,
            requests: vec![first],
        }
    }

    fn full(&self, config: &BatchConfig) -> bool {
        self.rows >= config.max_batch_rows
    }

    /// Takes `request` if it fits; gives it back otherwise, to open the next batch.
    fn offer(&mut self, request: Request, config: &BatchConfig) -> Option<Request> {
        if request.abandoned() {
            return None;
        }
        if self.rows + request.rows.len() > config.max_batch_rows || request.width != self.width {
            return Some(request);
        }
        self.rows += request.rows.len();
        self.requests.push(request);
        None
    }
}

/// The collector: forms batches from the queue and hands them to blocking threads, one per
/// free slot. Ends when every [`Batcher`] handle is gone and the queue is drained, after the
/// batches it started have finished.
async fn collect(mut queue: mpsc::Receiver<Request>, model: Arc<OnnxModel>, config: BatchConfig) {
    let slots = Arc::new(Semaphore::new(config.concurrent_batches));
    // A request that did not fit the previous batch opens the next one.
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match queue.recv().await {
                Some(request) => request,
                None => break,
            },
        };
        if first.abandoned() {
            continue;
        }
        let mut batch = Batch::new(first);
        // Open until full, until `max_wait` after the first request arrived (time it spent in
        // the queue counts), or until a request does not fit.
        let deadline = tokio::time::sleep_until(batch.requests[0].arrived + config.max_wait);
        tokio::pin!(deadline);
        while !batch.full(&config) && carried.is_none() {
            tokio::select! {
                biased;
                received = queue.recv() => match received {
                    Some(request) => carried = batch.offer(request, &config),
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        // Closed; while every slot is busy, keep taking requests that fit.
        let slot = loop {
            if batch.full(&config) || carried.is_some() {
                break slots.clone().acquire_owned().await;
            }
            tokio::select! {
                biased;
                slot = slots.clone().acquire_owned() => break slot,
                received = queue.recv() => match received {
                    Some(request) => carried = batch.offer(request, &config),
                    None => break slots.clone().acquire_owned().await,
                },
            }
        };
        // The semaphore is never closed; without a slot the requests get `Lost`.
        let Ok(slot) = slot else { continue };
        start(batch.requests, model.clone(), slot);
    }
    // Every slot back means every batch started here has answered.
    let _ = slots
        .acquire_many(u32::try_from(config.concurrent_batches).unwrap_or(u32::MAX))
        .await;
}

fn start(requests: Vec<Request>, model: Arc<OnnxModel>, slot: OwnedSemaphorePermit) {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        run_batch(requests, &|rows| model.predict_rows(rows));
    });
}

/// A model run over rows.
type Predict<'m> = dyn Fn(&[Vec<f32>]) -> Result<Vec<Output>, ModelError> + 'm;

/// Runs one batch and answers each request; `predict` is the model (a parameter so the
/// fallback can be tested without ONNX Runtime).
fn run_batch(requests: Vec<Request>, predict: &Predict<'_>) {
    let requests: Vec<Request> = requests.into_iter().filter(|r| !r.abandoned()).collect();
    if requests.is_empty() {
        return;
    }
    let batch_requests = requests.len();
    let mut rows = Vec::with_capacity(requests.iter().map(|r| r.rows.len()).sum());
    let mut callers = Vec::with_capacity(batch_requests);
    for request in requests {
        let start = rows.len();
        rows.extend(request.rows);
        callers.push((start..rows.len(), request.arrived, request.reply));
    }
    let batch_rows = rows.len();
    let started = Instant::now();
    let (outcome, cpu) = crate::cpu::measure(|| predict(&rows));
    let inference = started.elapsed();
    if batch_requests == 1 {
        // Alone, the outputs need no split, so models whose outputs have no row dimension
        // work too.
        let (_, arrived, reply) = callers.remove(0);
        let _ = reply.send(
            outcome
                .map(|outputs| Batched {
                    outputs,
                    batch_rows,
                    batch_requests,
                    queued: started.duration_since(arrived),
                    inference,
                    cpu,
                    reports_run: true,
                })
                .map_err(BatchError::Model),
        );
        return;
    }
    let ranges: Vec<Range<usize>> = callers.iter().map(|(range, ..)| range.clone()).collect();
    if let Some(parts) = outcome
        .ok()
        .and_then(|outputs| split(&outputs, batch_rows, &ranges))
    {
        for (index, ((range, arrived, reply), outputs)) in
            callers.into_iter().zip(parts).enumerate()
        {
            let _ = reply.send(Ok(Batched {
                outputs,
                batch_rows,
                batch_requests,
                queued: started.duration_since(arrived),
                inference,
                cpu: crate::cpu::share(cpu, range.len(), batch_rows),
                reports_run: index == 0,
            }));
        }
        return;
    }
    // The merged run failed, or its outputs do not follow the rows: one run per request, so
    // each gets its own outcome.
    for (range, arrived, reply) in callers {
        if reply.is_closed() {
            continue;
        }
        let started = Instant::now();
        let (outcome, cpu) = crate::cpu::measure(|| predict(&rows[range.clone()]));
        let inference = started.elapsed();
        let _ = reply.send(
            outcome
                .map(|outputs| Batched {
                    outputs,
                    batch_rows: range.len(),
                    batch_requests: 1,
                    queued: started.duration_since(arrived),
                    inference,
                    cpu,
                    reports_run: true,
                })
                .map_err(BatchError::Model),
        );
    }
}

/// Each request's share of a merged run's outputs; `None` unless every output has one entry
/// per input row.
fn split(outputs: &[Output], rows: usize, ranges: &[Range<usize>]) -> Option<Vec<Vec<Output>>> {
    if outputs
        .iter()
        .any(|output| output.value.row_count() != Some(rows))
    {
        return None;
    }
    ranges
        .iter()
        .map(|range| {
            outputs
                .iter()
                .map(|output| output.slice_rows(range.clone()))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::OutputValue;

    /// A stand-in model: each row's label is its first value and its maps hold its sum;
    /// a NaN anywhere fails the whole run, as a bad value could fail a real one.
    fn fake(rows: &[Vec<f32>]) -> Result<Vec<Output>, ModelError> {
        if rows.iter().flatten().any(|v| v.is_nan()) {
            return Err(ModelError::Run("NaN".to_owned()));
        }
        Ok(vec![
            Output {
                name: "label".to_owned(),
                value: OutputValue::I64 {
                    shape: vec![rows.len() as i64],
                    data: rows.iter().map(|row| row[0] as i64).collect(),
                },
            },
            Output {
                name: "scores".to_owned(),
                value: OutputValue::F32 {
                    shape: vec![rows.len() as i64, 2],
                    data: rows.iter().flat_map(|row| [row[0], -row[0]]).collect(),
                },
            },
            Output {
                name: "maps".to_owned(),
                value: OutputValue::Maps(
                    rows.iter()
                        .map(|row| BTreeMap::from([("sum".to_owned(), row.iter().sum())]))
                        .collect(),
                ),
            },
        ])
    }

    fn request(rows: Vec<Vec<f32>>) -> (Request, oneshot::Receiver<Result<Batched, BatchError>>) {
        let (reply, answer) = oneshot::channel();
        let width = rows[0].len();
        let request = Request {
            rows,
            width,
            arrived: Instant::now(),
            reply,
        };
        (request, answer)
    }

    #[test]
    fn each_request_gets_its_own_rows() {
        let (a, mut answer_a) = request(vec![vec![1.0, 1.0], vec![2.0, 2.0]]);
        let (b, mut answer_b) = request(vec![vec![3.0, 3.0]]);
        run_batch(vec![a, b], &fake);
        let a = answer_a.try_recv().unwrap().unwrap();
        let b = answer_b.try_recv().unwrap().unwrap();
        assert_eq!((a.batch_rows, a.batch_requests), (3, 2));
        assert!(a.reports_run != b.reports_run, "one report per run");
        assert_eq!(a.outputs, fake(&[vec![1.0, 1.0], vec![2.0, 2.0]]).unwrap());
        assert_eq!(b.outputs, fake(&[vec![3.0, 3.0]]).unwrap());
    }

    #[test]
    fn a_failed_merged_run_is_rerun_request_by_request() {
        let (good, mut answer_good) = request(vec![vec![1.0, 1.0]]);
        let (bad, mut answer_bad) = request(vec![vec![f32::NAN, 1.0]]);
        let (also_good, mut answer_also_good) = request(vec![vec![5.0, 1.0], vec![6.0, 1.0]]);
        run_batch(vec![good, bad, also_good], &fake);
        let good = answer_good.try_recv().unwrap().unwrap();
        assert_eq!(good.outputs, fake(&[vec![1.0, 1.0]]).unwrap());
        assert_eq!((good.batch_rows, good.batch_requests), (1, 1));
        let also_good = answer_also_good.try_recv().unwrap().unwrap();
        assert_eq!(
            also_good.outputs,
            fake(&[vec![5.0, 1.0], vec![6.0, 1.0]]).unwrap()
        );
        assert!(matches!(
            answer_bad.try_recv().unwrap(),
            Err(BatchError::Model(ModelError::Run(_)))
        ));
    }

    #[test]
    fn outputs_without_a_row_per_input_are_not_split() {
        let scalar = |_: &[Vec<f32>]| {
            Ok(vec![Output {
                name: "total".to_owned(),
                value: OutputValue::F32 {
                    shape: vec![],
                    data: vec![1.0],
                },
            }])
        };
        let (a, mut answer_a) = request(vec![vec![1.0]]);
        let (b, mut answer_b) = request(vec![vec![2.0], vec![3.0]]);
        run_batch(vec![a, b], &scalar);
        for answer in [answer_a.try_recv(), answer_b.try_recv()] {
            let answer = answer.unwrap().unwrap();
            assert_eq!(answer.batch_requests, 1, "run alone, not split");
            assert_eq!(answer.outputs.len(), 1);
        }
    }

    #[test]
    fn outputs_are_sliced_by_rows_keeping_trailing_dimensions() {
        let cube = OutputValue::F64 {
            shape: vec![3, 2, 2],
            data: (0..12).map(f64::from).collect(),
        };
        assert_eq!(cube.row_count(), Some(3));
        assert_eq!(
            cube.slice_rows(1..3),
            Some(OutputValue::F64 {
                shape: vec![2, 2, 2],
                data: (4..12).map(f64::from).collect(),
            })
        );
        assert_eq!(
            cube.slice_rows(3..3),
            Some(OutputValue::F64 {
                shape: vec![0, 2, 2],
                data: vec![],
            })
        );
        assert_eq!(cube.slice_rows(2..4), None);
        let labels = OutputValue::I64 {
            shape: vec![3],
            data: vec![7, 8, 9],
        };
        assert_eq!(
            labels.slice_rows(2..3),
            Some(OutputValue::I64 {
                shape: vec![1],
                data: vec![9],
            })
        );
        let scalar = OutputValue::F32 {
            shape: vec![],
            data: vec![1.0],
        };
        assert_eq!((scalar.row_count(), scalar.slice_rows(0..1)), (None, None));
        let inconsistent = OutputValue::F32 {
            shape: vec![2, 2],
            data: vec![1.0; 3],
        };
        assert_eq!(inconsistent.slice_rows(0..1), None);
        let maps = OutputValue::Maps(vec![
            BTreeMap::from([("0".to_owned(), 0.25)]),
            BTreeMap::from([("1".to_owned(), 0.75)]),
        ]);
        assert_eq!(
            maps.slice_rows(1..2),
            Some(OutputValue::Maps(vec![BTreeMap::from([(
                "1".to_owned(),
                0.75
            )])]))
        );
        assert_eq!(maps.slice_rows(1..3), None);
    }

    #[test]
    fn abandoned_requests_do_not_run() {
        let (gone, answer_gone) = request(vec![vec![1.0]]);
        drop(answer_gone);
        let (kept, mut answer_kept) = request(vec![vec![2.0]]);
        run_batch(vec![gone, kept], &fake);
        let kept = answer_kept.try_recv().unwrap().unwrap();
        assert_eq!((kept.batch_rows, kept.batch_requests), (1, 1));
        assert_eq!(kept.outputs, fake(&[vec![2.0]]).unwrap());
    }
}
