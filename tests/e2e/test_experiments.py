import pytest
import mlflow
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from e2e_support import unique_name


def test_default_experiment_exists(client):
    exp = client.get_experiment("0")
    assert exp.experiment_id == "0"
    assert exp.name == "Default"
    assert exp.lifecycle_stage == "active"
    assert client.get_experiment_by_name("Default").experiment_id == "0"


def test_create_get_with_tags(client):
    name = unique_name("exp")
    exp_id = client.create_experiment(name, tags={"team": "vision", "priority": "1"})
    assert isinstance(exp_id, str) and exp_id.isdigit()

    exp = client.get_experiment(exp_id)
    assert exp.experiment_id == exp_id
    assert exp.name == name
    assert exp.lifecycle_stage == "active"
    assert exp.tags["team"] == "vision"
    assert exp.tags["priority"] == "1"
    # Served artifacts: the default location is the proxy URI for this experiment.
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.creation_time > 1_600_000_000_000
    assert exp.last_update_time >= exp.creation_time

    by_name = client.get_experiment_by_name(name)
    assert by_name.experiment_id == exp_id
    assert by_name.tags == exp.tags


def test_create_with_artifact_location(client):
    name = unique_name("exp-loc")
    loc = f"mlflow-artifacts:/custom/{name}"
    exp_id = client.create_experiment(name, artifact_location=loc)
    assert client.get_experiment(exp_id).artifact_location == loc
    # Runs of this experiment live under it.
    run = client.create_run(exp_id)
    assert run.info.artifact_uri == f"{loc}/{run.info.run_id}/artifacts"


def test_get_by_name_missing_returns_none(client):
    assert client.get_experiment_by_name(unique_name("does-not-exist")) is None


def test_set_experiment_creates_then_reuses(client):
    name = unique_name("exp-set")
    exp = mlflow.set_experiment(name)
    assert exp.name == name
    again = mlflow.set_experiment(name)
    assert again.experiment_id == exp.experiment_id
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == exp.experiment_id
    by_id = mlflow.set_experiment(experiment_id=exp.experiment_id)
    assert by_id.name == name


def test_search_filter_order_and_paging(client):
    prefix = unique_name("search-exp")
    ids = {}
    for i in range(5):
        n = f"{prefix}-{i}"
        ids[n] = client.create_experiment(n, tags={"parity": "even" if i % 2 == 0 else "odd"})

    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'")
    assert sorted(e.name for e in found) == sorted(ids)

    desc = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'",
                                     order_by=["name DESC"])
    assert [e.name for e in desc] == sorted(ids, reverse=True)

    # Default order: newest first.
    default = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'")
    times = [e.creation_time for e in default]
    assert times == sorted(times, reverse=True)

    even = client.search_experiments(
        filter_string=f"name LIKE '{prefix}-%' AND tags.parity = 'even'", order_by=["name ASC"])
    assert [e.name for e in even] == [f"{prefix}-0", f"{prefix}-2", f"{prefix}-4"]

    ilike = client.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}-%'")
    assert len(ilike) == 5

    # Paging with page_token.
    seen = []
    token = None
    pages = 0
    while True:
        page = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'",
                                         order_by=["name ASC"], max_results=2, page_token=token)
        pages += 1
        assert len(page) <= 2
        seen += [e.name for e in page]
        token = page.token
        if not token:
            break
        assert pages < 10
    assert pages == 3
    assert seen == sorted(ids)

    first = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=5)
    assert len(first) == 5
    assert not first.token


def test_search_by_experiment_attributes(client):
    prefix = unique_name("attr-exp")
    a = client.create_experiment(f"{prefix}-a")
    client.create_experiment(f"{prefix}-b")
    exact = client.search_experiments(filter_string=f"name = '{prefix}-a'")
    assert [e.experiment_id for e in exact] == [a]
    neq = client.search_experiments(filter_string=f"name LIKE '{prefix}-%' AND name != '{prefix}-a'")
    assert [e.name for e in neq] == [f"{prefix}-b"]
    exp_a = client.get_experiment(a)
    newer = client.search_experiments(
        filter_string=f"name LIKE '{prefix}-%' AND creation_time >= {exp_a.creation_time}")
    assert {e.name for e in newer} >= {f"{prefix}-a"}


def test_rename(client):
    old = unique_name("exp-old")
    new = unique_name("exp-new")
    exp_id = client.create_experiment(old)
    client.rename_experiment(exp_id, new)
    assert client.get_experiment(exp_id).name == new
    assert client.get_experiment_by_name(new).experiment_id == exp_id
    assert client.get_experiment_by_name(old) is None


def test_set_and_delete_tag(client):
    exp_id = client.create_experiment(unique_name("exp-tags"))
    client.set_experiment_tag(exp_id, "stage", "dev")
    client.set_experiment_tag(exp_id, "owner", "alice")
    assert client.get_experiment(exp_id).tags["stage"] == "dev"
    client.set_experiment_tag(exp_id, "stage", "prod")  # overwrite
    tags = client.get_experiment(exp_id).tags
    assert tags["stage"] == "prod" and tags["owner"] == "alice"
    client.delete_experiment_tag(exp_id, "stage")
    tags = client.get_experiment(exp_id).tags
    assert "stage" not in tags and tags["owner"] == "alice"

    # Fluent API on the active experiment.
    mlflow.set_experiment(experiment_id=exp_id)
    mlflow.set_experiment_tags({"a": "1", "b": "2"})
    tags = client.get_experiment(exp_id).tags
    assert tags["a"] == "1" and tags["b"] == "2"


def test_delete_and_restore_with_view_types(client):
    name = unique_name("exp-del")
    exp_id = client.create_experiment(name)
    client.delete_experiment(exp_id)

    exp = client.get_experiment(exp_id)  # soft delete: still readable
    assert exp.lifecycle_stage == "deleted"

    flt = f"name = '{name}'"
    assert client.search_experiments(filter_string=flt) == []  # ACTIVE_ONLY default
    assert [e.experiment_id for e in
            client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=flt)] == [exp_id]
    assert [e.experiment_id for e in
            client.search_experiments(view_type=ViewType.ALL, filter_string=flt)] == [exp_id]

    # A deleted experiment accepts no new runs.
    with pytest.raises(MlflowException) as ei:
        client.create_run(exp_id)
    assert ei.value.error_code == "INVALID_PARAMETER_VALUE"

    # Its name stays reserved.
    with pytest.raises(MlflowException) as ei:
        client.create_experiment(name)
    assert ei.value.error_code == "RESOURCE_ALREADY_EXISTS"

    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert [e.experiment_id for e in client.search_experiments(filter_string=flt)] == [exp_id]
    assert [e.experiment_id for e in
            client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=flt)] == []
    run = client.create_run(exp_id)
    assert run.info.experiment_id == exp_id


def test_deleted_experiment_hides_from_get_by_name_search(client):
    name = unique_name("exp-del2")
    exp_id = client.create_experiment(name)
    client.delete_experiment(exp_id)
    # get-by-name still finds it (with its lifecycle stage)
    exp = client.get_experiment_by_name(name)
    assert exp is not None and exp.experiment_id == exp_id and exp.lifecycle_stage == "deleted"
