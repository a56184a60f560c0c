import pytest
import mlflow
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from e2e_support import now_ms


def test_start_run_lifecycle(client, experiment_id):
    before = now_ms()
    with mlflow.start_run(run_name="my-run", tags={"team": "nlp"},
                          description="a *markdown* note") as run:
        run_id = run.info.run_id
        assert len(run_id) == 32 and all(c in "0123456789abcdef" for c in run_id)
        live = client.get_run(run_id)
        assert live.info.status == "RUNNING"
        assert live.info.end_time is None
        assert mlflow.active_run().info.run_id == run_id
    after = now_ms()
    assert mlflow.active_run() is None

    r = client.get_run(run_id)
    assert r.info.run_id == run_id
    assert r.info.experiment_id == experiment_id
    assert r.info.run_name == "my-run"
    assert r.info.status == "FINISHED"
    assert r.info.lifecycle_stage == "active"
    assert before - 5000 <= r.info.start_time <= r.info.end_time <= after + 5000
    assert r.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    assert r.data.tags["team"] == "nlp"
    assert r.data.tags[MLFLOW_RUN_NAME] == "my-run"
    assert r.data.tags["mlflow.note.content"] == "a *markdown* note"
    # System tags set by the client.
    for key in ("mlflow.user", "mlflow.source.name", "mlflow.source.type"):
        assert key in r.data.tags, key


def test_run_without_name_gets_generated_name(client, experiment_id):
    with mlflow.start_run() as run:
        pass
    r = client.get_run(run.info.run_id)
    assert r.info.run_name  # client generates e.g. "bright-fox-123"
    assert r.data.tags[MLFLOW_RUN_NAME] == r.info.run_name


def test_failed_run_status_on_exception(client, experiment_id):
    with pytest.raises(ZeroDivisionError):
        with mlflow.start_run() as run:
            1 / 0
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_end_run_with_status(client, experiment_id):
    run = mlflow.start_run()
    mlflow.end_run(status="KILLED")
    r = client.get_run(run.info.run_id)
    assert r.info.status == "KILLED"
    assert r.info.end_time is not None


def test_nested_runs(client, experiment_id):
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child-1", nested=True) as c1:
            pass
        with mlflow.start_run(run_name="child-2", nested=True) as c2:
            with mlflow.start_run(run_name="grandchild", nested=True) as gc:
                pass
    assert client.get_run(c1.info.run_id).data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id
    assert client.get_run(c2.info.run_id).data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id
    assert client.get_run(gc.info.run_id).data.tags[MLFLOW_PARENT_RUN_ID] == c2.info.run_id
    assert MLFLOW_PARENT_RUN_ID not in client.get_run(parent.info.run_id).data.tags

    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.run_name ASC"])
    assert [r.info.run_name for r in children] == ["child-1", "child-2"]


def test_create_update_terminate(client, experiment_id):
    start = now_ms() - 60_000
    run = client.create_run(experiment_id, start_time=start, run_name="created",
                            tags={"k": "v"})
    assert run.info.status == "RUNNING"
    assert run.info.start_time == start
    assert run.info.run_name == "created"
    assert run.data.tags["k"] == "v"
    run_id = run.info.run_id

    client.update_run(run_id, status="SCHEDULED")
    assert client.get_run(run_id).info.status == "SCHEDULED"

    client.update_run(run_id, name="renamed")
    r = client.get_run(run_id)
    assert r.info.run_name == "renamed"
    assert r.data.tags[MLFLOW_RUN_NAME] == "renamed"
    assert r.info.status == "SCHEDULED"  # unchanged

    end = now_ms()
    client.set_terminated(run_id, status="FAILED", end_time=end)
    r = client.get_run(run_id)
    assert r.info.status == "FAILED"
    assert r.info.end_time == end

    client.update_run(run_id, status=RunStatus.to_string(RunStatus.FINISHED))
    assert client.get_run(run_id).info.status == "FINISHED"

    # Logging to a terminated run is allowed.
    client.log_metric(run_id, "after_end", 1.0)
    assert client.get_run(run_id).data.metrics["after_end"] == 1.0


def test_set_terminated_default_finished(client, experiment_id):
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    r = client.get_run(run.info.run_id)
    assert r.info.status == "FINISHED"
    assert r.info.end_time >= r.info.start_time


def test_delete_restore_run(client, experiment_id):
    run = client.create_run(experiment_id, run_name="doomed")
    run_id = run.info.run_id
    client.delete_run(run_id)
    r = client.get_run(run_id)  # soft delete
    assert r.info.lifecycle_stage == "deleted"
    assert client.search_runs([experiment_id]) == []
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [x.info.run_id for x in deleted] == [run_id]

    # A deleted run rejects new data.
    with pytest.raises(MlflowException) as ei:
        client.log_param(run_id, "p", "1")
    assert ei.value.error_code == "INVALID_PARAMETER_VALUE"

    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    assert [x.info.run_id for x in client.search_runs([experiment_id])] == [run_id]
    client.log_param(run_id, "p", "1")
    assert client.get_run(run_id).data.params == {"p": "1"}


def test_resume_run_by_id(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.log_param("a", "1")
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_param("b", "2")
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
    r = client.get_run(run.info.run_id)
    assert r.data.params == {"a": "1", "b": "2"}
    assert r.info.status == "FINISHED"


def test_get_run_fields_types(client, experiment_id):
    run = client.create_run(experiment_id, tags={"x": "y"})
    client.log_param(run.info.run_id, "lr", 0.01)
    client.log_metric(run.info.run_id, "m", 3, timestamp=1_700_000_000_000, step=7)
    r = client.get_run(run.info.run_id)
    assert r.data.params == {"lr": "0.01"}
    assert r.data.metrics == {"m": 3.0}
    assert isinstance(r.data.metrics["m"], float)
    assert r.info.user_id is not None
    assert isinstance(r.info.start_time, int)
    assert r.inputs.dataset_inputs == []


def test_search_created_run_visible_immediately(client, experiment_id):
    ids = [client.create_run(experiment_id).info.run_id for _ in range(3)]
    found = client.search_runs([experiment_id])
    assert sorted(r.info.run_id for r in found) == sorted(ids)
    # Default order: start_time DESC.
    starts = [r.info.start_time for r in found]
    assert starts == sorted(starts, reverse=True)
