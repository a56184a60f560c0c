from pathlib import Path

import pandas as pd
import pytest
import mlflow
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException

from e2e_models import log_add_n
from e2e_support import unique_name


def test_initialize_tags_params_metrics_finalize(client, experiment_id):
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="clf", model_type="classifier",
                                               tags={"k": "v", "team": "a"},
                                               params={"alpha": "0.1"})
        model_id = model.model_id
        assert model_id.startswith("m-") and len(model_id) == 34
        assert model.status == LoggedModelStatus.PENDING
        assert model.experiment_id == experiment_id
        assert model.source_run_id == run.info.run_id
        assert model.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts"

        mlflow.set_logged_model_tags(model_id, {"team": "b", "extra": "1"})
        mlflow.delete_logged_model_tag(model_id, "k")
        mlflow.log_model_params({"beta": "2"}, model_id=model_id)
        mlflow.log_metric("acc", 0.93, step=1, model_id=model_id)
        mlflow.log_metrics({"f1": 0.5}, model_id=model_id)

    m = mlflow.get_logged_model(model_id)
    assert m.name == "clf"
    assert m.model_type == "classifier"
    assert m.tags["team"] == "b" and m.tags["extra"] == "1" and "k" not in m.tags
    assert m.params == {"alpha": "0.1", "beta": "2"}
    metrics = {x.key: x for x in m.metrics}
    assert metrics["acc"].value == 0.93 and metrics["acc"].step == 1
    assert metrics["acc"].run_id == run.info.run_id
    assert metrics["f1"].value == 0.5
    assert m.status == LoggedModelStatus.PENDING

    # Metrics logged with model_id are also run metrics.
    assert client.get_run(run.info.run_id).data.metrics["acc"] == 0.93

    done = mlflow.finalize_logged_model(model_id, LoggedModelStatus.READY)
    assert done.status == LoggedModelStatus.READY
    assert mlflow.get_logged_model(model_id).status == LoggedModelStatus.READY


def test_client_create_search_delete(client, experiment_id):
    run = client.create_run(experiment_id)
    a = client.create_logged_model(experiment_id, name="model-a", source_run_id=run.info.run_id,
                                   tags={"flavor": "x"}, params={"lr": "0.1"}, model_type="reg")
    b = client.create_logged_model(experiment_id, name="model-b", params={"lr": "0.2"})
    c = client.create_logged_model(experiment_id, name="model-c")
    client.log_metric(run.info.run_id, "rmse", 0.3, model_id=a.model_id)
    client.log_metric(run.info.run_id, "rmse", 0.7, model_id=b.model_id)
    client.finalize_logged_model(a.model_id, LoggedModelStatus.READY)
    client.finalize_logged_model(c.model_id, "FAILED")

    def ids(**kw):
        return {m.model_id for m in client.search_logged_models([experiment_id], **kw)}

    assert ids() == {a.model_id, b.model_id, c.model_id}
    assert ids(filter_string="name = 'model-b'") == {b.model_id}
    assert ids(filter_string="name LIKE 'model-%'") == {a.model_id, b.model_id, c.model_id}
    assert ids(filter_string="params.lr = '0.1'") == {a.model_id}
    assert ids(filter_string="metrics.rmse < 0.5") == {a.model_id}
    # (MLflow 3.17.2 compares `status` against the stored enum number: `status = 'READY'`
    # matches nothing there, so status filters are not checked here.)
    assert ids(filter_string=f"source_run_id = '{run.info.run_id}'") == {a.model_id}

    ordered = client.search_logged_models(
        [experiment_id], order_by=[{"field_name": "name", "ascending": False}])
    assert [m.name for m in ordered] == ["model-c", "model-b", "model-a"]

    page = client.search_logged_models([experiment_id], max_results=2,
                                       order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in page] == ["model-a", "model-b"] and page.token
    page2 = client.search_logged_models([experiment_id], max_results=2, page_token=page.token,
                                        order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in page2] == ["model-c"]

    df = mlflow.search_logged_models(experiment_ids=[experiment_id],
                                     filter_string="name = 'model-a'")
    assert list(df["model_id"]) == [a.model_id]

    client.delete_logged_model(b.model_id)
    assert ids() == {a.model_id, c.model_id}
    with pytest.raises(MlflowException) as ei:
        client.get_logged_model(b.model_id)
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_get_missing_logged_model(client):
    with pytest.raises(MlflowException) as ei:
        client.get_logged_model("m-" + "0" * 32)
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_pyfunc_log_and_load(client, experiment_id, tmp_path):
    with mlflow.start_run() as run:
        info = log_add_n(3, name="adder", params={"n": "3"})
    assert info.model_id.startswith("m-")
    assert info.model_uri == f"models:/{info.model_id}"
    assert info.run_id == run.info.run_id

    m = client.get_logged_model(info.model_id)
    assert m.name == "adder"
    assert m.status == LoggedModelStatus.READY
    assert m.source_run_id == run.info.run_id
    assert m.params.get("n") == "3"

    out = client.get_run(run.info.run_id).outputs
    assert [o.model_id for o in out.model_outputs] == [info.model_id]

    files = {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert "MLmodel" in files and "python_model.pkl" in files

    df = pd.DataFrame({"x": [1.0, 2.0]})
    for uri in (f"models:/{info.model_id}", f"runs:/{run.info.run_id}/adder"):
        loaded = mlflow.pyfunc.load_model(uri)
        pred = loaded.predict(df)
        assert list(pred["x"]) == [4.0, 5.0], uri

    local = mlflow.artifacts.download_artifacts(f"models:/{info.model_id}", dst_path=str(tmp_path))
    assert (Path(local) / "MLmodel").is_file()

    found = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    assert [x.model_id for x in found] == [info.model_id]
    assert mlflow.last_logged_model().model_id == info.model_id


def test_log_model_without_run(client, experiment_id):
    info = log_add_n(1, name=unique_name("free"))
    m = client.get_logged_model(info.model_id)
    assert not m.source_run_id  # MLflow answers ''

    assert m.experiment_id == experiment_id
    assert list(mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"x": [1]}))["x"]) == [2]
