from pathlib import Path

import pandas as pd
import pytest
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from e2e_models import log_add_n
from e2e_support import unique_name


@pytest.fixture(scope="module")
def models(tracking_uri):
    """Two runs, each with a logged pyfunc model (AddN(10), AddN(20)); shared, read-only."""
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(unique_name("registry"))
    out = {}
    for n in (10, 20):
        with mlflow.start_run(experiment_id=exp_id) as run:
            info = log_add_n(n, name="model")
        out[n] = (run.info.run_id, info.model_id)
    return exp_id, out


def _predict(uri):
    return list(mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"x": [1.0]}))["x"])


def _user_tags(tags: dict) -> dict:
    """A version's tags without the ones slipway writes itself (the content digest)."""
    return {k: v for k, v in tags.items() if not k.startswith("slipway.")}


def _err(fn, *a, **kw):
    with pytest.raises(MlflowException) as ei:
        fn(*a, **kw)
    return ei.value.error_code


def test_create_registered_model_and_duplicate(client):
    name = unique_name("rm")
    rm = client.create_registered_model(name, tags={"owner": "ml"}, description="first model")
    assert rm.name == name
    assert rm.description == "first model"
    assert rm.tags == {"owner": "ml"}
    assert rm.creation_timestamp > 0
    got = client.get_registered_model(name)
    assert got.name == name and got.tags == {"owner": "ml"} and got.description == "first model"
    assert got.latest_versions == []
    assert _err(client.create_registered_model, name) == "RESOURCE_ALREADY_EXISTS"


def test_register_from_run_and_from_logged_model(client, models):
    _, m = models
    run10, model10 = m[10]
    run20, model20 = m[20]
    name = unique_name("rm-reg")
    v1 = mlflow.register_model(f"runs:/{run10}/model", name, tags={"src": "run"})
    assert v1.name == name and v1.version == "1"
    assert v1.status == "READY"
    assert v1.run_id == run10
    v2 = mlflow.register_model(f"models:/{model20}", name)
    assert v2.version == "2"
    assert v2.source == f"models:/{model20}"

    g1 = client.get_model_version(name, "1")
    assert g1.run_id == run10 and _user_tags(g1.tags) == {"src": "run"} and g1.current_stage == "None"
    g2 = client.get_model_version(name, "2")
    assert g2.run_id == run20

    assert _predict(f"models:/{name}/1") == [11.0]
    assert _predict(f"models:/{name}/2") == [21.0]
    assert _predict(f"models:/{name}/latest") == [21.0]

    rm = client.get_registered_model(name)
    assert sorted(v.version for v in rm.latest_versions) == ["2"]


def test_create_model_version_client(client, models):
    _, m = models
    run10, model10 = m[10]
    name = unique_name("rm-cv")
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"models:/{model10}", run_id=run10,
                                     tags={"t": "1"}, description="by client", model_id=model10)
    assert mv.version == "1"
    assert mv.description == "by client"
    assert _user_tags(mv.tags) == {"t": "1"}
    assert mv.status == "READY"
    assert mv.source == f"models:/{model10}"
    assert mv.run_id == run10

    # Source = the logged model's artifact location.
    loc = client.get_logged_model(model10).artifact_location
    mv2 = client.create_model_version(name, loc, model_id=model10)
    assert mv2.version == "2" and mv2.source == loc
    assert _predict(f"models:/{name}/2") == [11.0]

    # A source outside the resource named by run_id / model_id is rejected.
    assert _err(client.create_model_version, name, f"models:/{model10}",
                run_id=run10) == "INVALID_PARAMETER_VALUE"
    assert _err(client.create_model_version, name, loc, run_id=run10) == "INVALID_PARAMETER_VALUE"


def test_update_delete_versions_numbers_not_reused(client, models):
    _, m = models
    run10, _ = m[10]
    name = unique_name("rm-upd")
    for _ in range(3):
        mlflow.register_model(f"runs:/{run10}/model", name)
    client.update_model_version(name, "2", description="second")
    assert client.get_model_version(name, "2").description == "second"
    client.update_registered_model(name, description="updated desc")
    assert client.get_registered_model(name).description == "updated desc"

    client.delete_model_version(name, "3")
    assert _err(client.get_model_version, name, "3") == "RESOURCE_DOES_NOT_EXIST"
    v4 = mlflow.register_model(f"runs:/{run10}/model", name)
    assert v4.version == "4"
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert versions == [1, 2, 4]


def test_tags_on_models_and_versions(client, models):
    _, m = models
    name = unique_name("rm-tags")
    client.create_registered_model(name)
    mlflow.register_model(f"runs:/{m[10][0]}/model", name)
    client.set_registered_model_tag(name, "a", "1")
    client.set_registered_model_tag(name, "b", "2")
    client.set_registered_model_tag(name, "a", "3")
    client.delete_registered_model_tag(name, "b")
    assert client.get_registered_model(name).tags == {"a": "3"}
    client.set_model_version_tag(name, "1", "x", "y")
    client.set_model_version_tag(name, "1", "z", "w")
    client.delete_model_version_tag(name, "1", "z")
    assert _user_tags(client.get_model_version(name, "1").tags) == {"x": "y"}


def test_aliases(client, models, tmp_path):
    _, m = models
    name = unique_name("rm-alias")
    mlflow.register_model(f"runs:/{m[10][0]}/model", name)
    mlflow.register_model(f"runs:/{m[20][0]}/model", name)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")

    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.version == "1" and "champion" in mv.aliases
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(name, "2").aliases == ["challenger"]

    assert _predict(f"models:/{name}@champion") == [11.0]
    assert _predict(f"models:/{name}@challenger") == [21.0]

    # Moving an alias = setting it again.
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version(name, "1").aliases == []
    assert _predict(f"models:/{name}@champion") == [21.0]

    d = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / "a"))
    assert (Path(d) / "MLmodel").is_file() and (Path(d) / "python_model.pkl").is_file()
    d = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "b"))
    assert (Path(d) / "MLmodel").is_file()

    client.delete_registered_model_alias(name, "challenger")
    assert _err(client.get_model_version_by_alias, name, "challenger") == "INVALID_PARAMETER_VALUE"
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    assert _err(client.get_model_version_by_alias, name, "never") == "INVALID_PARAMETER_VALUE"


def test_search_registered_models(client):
    prefix = unique_name("rm-search")
    for i, team in enumerate(["red", "blue", "red"]):
        client.create_registered_model(f"{prefix}-{i}", tags={"team": team})

    def names(flt, **kw):
        return [r.name for r in client.search_registered_models(filter_string=flt, **kw)]

    assert names(f"name LIKE '{prefix}-%'") == [f"{prefix}-{i}" for i in range(3)]  # by name
    assert names(f"name LIKE '{prefix}-%'", order_by=["name DESC"]) == [
        f"{prefix}-{i}" for i in (2, 1, 0)]
    assert names(f"name = '{prefix}-1'") == [f"{prefix}-1"]
    assert names(f"name ILIKE '{prefix.upper()}-%' AND tags.team = 'red'") == [
        f"{prefix}-0", f"{prefix}-2"]
    assert names(f"name LIKE '{prefix}-%' AND tags.team != 'red'") == [f"{prefix}-1"]

    page = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2)
    assert len(page) == 2 and page.token
    rest = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2,
                                           page_token=page.token)
    assert [r.name for r in rest] == [f"{prefix}-2"] and not rest.token


def test_search_model_versions(client, models):
    _, m = models
    run10, _ = m[10]
    run20, _ = m[20]
    name = unique_name("rm-mvs")
    mlflow.register_model(f"runs:/{run10}/model", name)
    mlflow.register_model(f"runs:/{run20}/model", name)
    mlflow.register_model(f"runs:/{run10}/model", name)
    client.set_model_version_tag(name, "2", "quality", "good")

    def versions(flt, **kw):
        return [v.version for v in client.search_model_versions(flt, **kw)]

    assert sorted(versions(f"name = '{name}'")) == ["1", "2", "3"]
    assert versions(f"name = '{name}'", order_by=["version_number ASC"]) == ["1", "2", "3"]
    assert versions(f"name = '{name}'", order_by=["version_number DESC"]) == ["3", "2", "1"]
    assert sorted(versions(f"name = '{name}' AND run_id = '{run10}'")) == ["1", "3"]
    assert versions(f"name = '{name}' AND tags.quality = 'good'") == ["2"]
    assert sorted(versions(f"name = '{name}' AND version_number >= 2")) == ["2", "3"]
    assert sorted(versions(f"run_id IN ('{run20}') AND name = '{name}'")) == ["2"]
    page = client.search_model_versions(f"name = '{name}'", max_results=2,
                                        order_by=["version_number ASC"])
    assert [v.version for v in page] == ["1", "2"] and page.token


def test_rename_carries_versions(client, models):
    _, m = models
    old = unique_name("rm-old")
    new = unique_name("rm-new")
    mlflow.register_model(f"runs:/{m[10][0]}/model", old)
    client.set_registered_model_alias(old, "prod", "1")
    client.rename_registered_model(old, new)
    assert client.get_registered_model(new).name == new
    assert client.get_model_version(new, "1").name == new
    assert client.get_model_version_by_alias(new, "prod").version == "1"
    assert _err(client.get_registered_model, old) == "RESOURCE_DOES_NOT_EXIST"
    assert _predict(f"models:/{new}/1") == [11.0]


def test_stage_transitions(client, models):
    _, m = models
    name = unique_name("rm-stage")
    for _ in range(3):
        mlflow.register_model(f"runs:/{m[10][0]}/model", name)
    mv = client.transition_model_version_stage(name, "1", "Production")
    assert mv.current_stage == "Production"
    client.transition_model_version_stage(name, "2", "Staging")
    latest = {v.current_stage: v.version for v in client.get_latest_versions(name)}
    assert latest == {"Production": "1", "Staging": "2", "None": "3"}
    assert [v.version for v in client.get_latest_versions(name, stages=["Production"])] == ["1"]

    client.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert client.get_model_version(name, "2").current_stage == "Staging"  # not archived
    assert [v.version for v in client.get_latest_versions(name, stages=["Production"])] == ["3"]
    assert _predict(f"models:/{name}/Production") == [11.0]


def test_delete_registered_model(client, models):
    _, m = models
    name = unique_name("rm-del")
    mlflow.register_model(f"runs:/{m[10][0]}/model", name)
    client.delete_registered_model(name)
    assert _err(client.get_registered_model, name) == "RESOURCE_DOES_NOT_EXIST"
    assert _err(client.get_model_version, name, "1") == "RESOURCE_DOES_NOT_EXIST"
    assert client.search_model_versions(f"name = '{name}'") == []
    # The name can be used again afterwards; versions restart at 1.
    assert mlflow.register_model(f"runs:/{m[10][0]}/model", name).version == "1"


def test_registry_missing_entities(client):
    missing = unique_name("missing")
    assert _err(client.get_registered_model, missing) == "RESOURCE_DOES_NOT_EXIST"
    assert _err(client.get_model_version, missing, "1") == "RESOURCE_DOES_NOT_EXIST"
    assert _err(client.delete_registered_model, missing) == "RESOURCE_DOES_NOT_EXIST"
    name = unique_name("rm-nov")
    client.create_registered_model(name)
    assert _err(client.get_model_version, name, "7") == "RESOURCE_DOES_NOT_EXIST"
