import math
import sys

import pytest
import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from e2e_support import now_ms


def test_params(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_param("lr", 0.01)  # same value again: fine
        mlflow.log_params({"epochs": 10, "optimizer": "adam", "layers": [64, 32]})
        with pytest.raises(MlflowException) as ei:
            mlflow.log_param("lr", 0.02)
        assert ei.value.error_code == "INVALID_PARAMETER_VALUE"
    params = client.get_run(run.info.run_id).data.params
    assert params == {"lr": "0.01", "epochs": "10", "optimizer": "adam", "layers": "[64, 32]"}


def test_changing_param_in_log_batch_fails_whole_batch(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "p", "a")
    with pytest.raises(MlflowException) as ei:
        client.log_batch(run_id, params=[Param("q", "1"), Param("p", "b")])
    assert ei.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params["p"] == "a"


def test_long_param_and_tag_values(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    pval = "p" * 6000
    tval = "t" * 8000
    client.log_param(run_id, "long", pval)
    client.set_tag(run_id, "long", tval)
    r = client.get_run(run_id)
    assert r.data.params["long"] == pval
    assert r.data.tags["long"] == tval


def test_metrics_steps_and_timestamps(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    t0 = 1_700_000_000_000
    for step, value in enumerate([0.9, 0.7, 0.55, 0.4]):
        client.log_metric(run_id, "loss", value, timestamp=t0 + step * 1000, step=step)
    hist = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in hist] == [
        (0, 0.9, t0), (1, 0.7, t0 + 1000), (2, 0.55, t0 + 2000), (3, 0.4, t0 + 3000)]
    assert all(m.key == "loss" for m in hist)
    assert client.get_run(run_id).data.metrics["loss"] == 0.4


def test_latest_metric_is_max_step_not_last_logged(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    t = now_ms()
    client.log_metric(run_id, "acc", 0.5, timestamp=t, step=10)
    client.log_metric(run_id, "acc", 0.9, timestamp=t + 1, step=2)
    assert client.get_run(run_id).data.metrics["acc"] == 0.5
    # Same step: later timestamp wins.
    client.log_metric(run_id, "acc", 0.6, timestamp=t + 5, step=10)
    assert client.get_run(run_id).data.metrics["acc"] == 0.6
    assert len(client.get_metric_history(run_id, "acc")) == 3


def test_duplicate_points_are_all_kept(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    t = now_ms()
    client.log_metric(run_id, "dup", 1.0, timestamp=t, step=0)
    client.log_metric(run_id, "dup", 2.0, timestamp=t, step=0)
    client.log_metric(run_id, "dup", 2.0, timestamp=t + 1, step=0)
    vals = sorted(m.value for m in client.get_metric_history(run_id, "dup"))
    assert vals == [1.0, 2.0, 2.0]


def test_log_metrics_fluent_with_step(client, experiment_id):
    with mlflow.start_run() as run:
        for step in range(3):
            mlflow.log_metrics({"a": step * 1.5, "b": -step}, step=step)
    r = client.get_run(run.info.run_id)
    assert r.data.metrics == {"a": 3.0, "b": -2.0}
    assert [m.value for m in client.get_metric_history(run.info.run_id, "a")] == [0.0, 1.5, 3.0]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "b")] == [0, 1, 2]


# MLflow's SQL store keeps +/-inf as +/-sys.float_info.max (1.7976931348623157e308) and
# returns that; real infinities are accepted too.
POS_INF = (math.inf, sys.float_info.max)
NEG_INF = (-math.inf, -sys.float_info.max)


def test_nan_and_infinities_round_trip(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    t = now_ms()
    client.log_metric(run_id, "nan", float("nan"), timestamp=t, step=0)
    client.log_metric(run_id, "pinf", float("inf"), timestamp=t, step=0)
    client.log_metric(run_id, "ninf", float("-inf"), timestamp=t, step=0)
    client.log_batch(run_id, metrics=[
        Metric("mixed", 1.0, t, 0), Metric("mixed", float("nan"), t, 1),
        Metric("mixed", float("inf"), t, 2), Metric("mixed", float("-inf"), t, 3)])

    m = client.get_run(run_id).data.metrics
    assert math.isnan(m["nan"])
    assert m["pinf"] in POS_INF
    assert m["ninf"] in NEG_INF
    assert m["mixed"] in NEG_INF  # step 3 is the latest

    hist = client.get_metric_history(run_id, "mixed")
    assert [h.step for h in hist] == [0, 1, 2, 3]
    assert hist[0].value == 1.0
    assert math.isnan(hist[1].value)
    assert hist[2].value in POS_INF
    assert hist[3].value in NEG_INF
    assert math.isnan(client.get_metric_history(run_id, "nan")[0].value)


def test_tags_set_and_delete(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"owner": "bob", "n": 5})
        mlflow.set_tag("stage", "prod")  # tags are mutable
    run_id = run.info.run_id
    tags = client.get_run(run_id).data.tags
    assert tags["stage"] == "prod" and tags["owner"] == "bob" and tags["n"] == "5"
    client.delete_tag(run_id, "owner")
    tags = client.get_run(run_id).data.tags
    assert "owner" not in tags and tags["stage"] == "prod"
    with pytest.raises(MlflowException) as ei:
        client.delete_tag(run_id, "never-set")
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_log_batch_chunked_by_client(client, experiment_id):
    """2,500 metrics + 150 params + 120 tags: the client splits this into several requests."""
    run_id = client.create_run(experiment_id).info.run_id
    t = now_ms()
    metrics = [Metric(f"m{k}", float(k * 1000 + s), t + s, s) for k in range(5) for s in range(500)]
    params = [Param(f"p{i}", str(i)) for i in range(150)]
    tags = [RunTag(f"t{i}", f"v{i}") for i in range(120)]
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    r = client.get_run(run_id)
    assert len(r.data.params) == 150 and r.data.params["p149"] == "149"
    assert all(r.data.tags[f"t{i}"] == f"v{i}" for i in range(120))
    assert {k: r.data.metrics[k] for k in (f"m{k}" for k in range(5))} == {
        f"m{k}": float(k * 1000 + 499) for k in range(5)}
    hist = client.get_metric_history(run_id, "m3")
    assert [m.step for m in hist] == list(range(500))
    assert [m.value for m in hist] == [float(3000 + s) for s in range(500)]


def test_async_logging_then_flush(client, experiment_id):
    with mlflow.start_run() as run:
        ops = []
        for step in range(50):
            ops.append(mlflow.log_metric("async_m", step * 2.0, step=step, synchronous=False))
        ops.append(mlflow.log_param("async_p", "x", synchronous=False))
        ops.append(mlflow.set_tag("async_t", "y", synchronous=False))
        ops.append(mlflow.log_metrics({"am1": 1.0, "am2": 2.0}, step=0, synchronous=False))
        ops[-1].wait()
        mlflow.flush_async_logging()
    r = client.get_run(run.info.run_id)
    assert r.data.params["async_p"] == "x"
    assert r.data.tags["async_t"] == "y"
    assert r.data.metrics["am1"] == 1.0 and r.data.metrics["am2"] == 2.0
    hist = client.get_metric_history(run.info.run_id, "async_m")
    assert sorted((m.step, m.value) for m in hist) == [(s, s * 2.0) for s in range(50)]


def test_async_logging_env(client, experiment_id, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "true")
    with mlflow.start_run() as run:
        for step in range(20):
            mlflow.log_metric("env_async", float(step), step=step)
        mlflow.log_params({"a": 1, "b": 2})
    mlflow.flush_async_logging()
    r = client.get_run(run.info.run_id)
    assert r.data.params == {"a": "1", "b": "2"}
    assert r.data.metrics["env_async"] == 19.0
    assert len(client.get_metric_history(run.info.run_id, "env_async")) == 20


def test_metric_history_over_25000_points_is_paged(client, experiment_id):
    """The client asks get-history for 25,000 points per page; 25,600 points need 2 pages."""
    run_id = client.create_run(experiment_id).info.run_id
    n = 25_600
    t0 = 1_700_000_000_000
    # Values chosen so the order by (timestamp, step) is checkable.
    metrics = [Metric("long", (i % 997) / 7.0, t0 + i, i) for i in range(n)]
    client.log_batch(run_id, metrics=metrics)
    hist = client.get_metric_history(run_id, "long")
    assert len(hist) == n
    assert [m.step for m in hist] == list(range(n))
    assert [m.timestamp for m in hist] == [t0 + i for i in range(n)]
    assert all(m.value == (i % 997) / 7.0 for i, m in enumerate(hist))
    assert client.get_run(run_id).data.metrics["long"] == ((n - 1) % 997) / 7.0


def test_metric_history_missing_key_is_empty(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    assert client.get_metric_history(run_id, "nothing") == []


def test_system_tags(client, experiment_id):
    with mlflow.start_run() as run:
        pass
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["mlflow.source.type"] in ("LOCAL", "NOTEBOOK", "JOB", "PROJECT")
    assert tags["mlflow.user"]
    assert tags["mlflow.runName"] == run.info.run_name
