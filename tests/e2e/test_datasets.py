import mlflow
import pandas as pd

from e2e_support import unique_name


def _df(n=5, seed=0):
    return pd.DataFrame({"x": [float(i + seed) for i in range(n)],
                         "y": [i % 2 for i in range(n)]})


def test_log_input_visible_on_run(client, experiment_id):
    ds_name = unique_name("train")
    ds = mlflow.data.from_pandas(_df(), name=ds_name, targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(ds, context="training", tags={"split": "v1"})
        mlflow.log_input(ds, context="training")  # idempotent
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    d = inputs[0].dataset
    assert d.name == ds_name
    assert d.digest == ds.digest
    assert d.source_type and d.source_type == ds.source._get_source_type()
    # The server stores what the client sent (schema inference needs more than mlflow-skinny).
    sent = ds._to_mlflow_entity()
    assert (d.schema or None) == (sent.schema or None)
    assert d.profile == sent.profile and '"num_rows": 5' in d.profile
    assert d.source == sent.source
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["split"] == "v1"


def test_multiple_datasets_and_contexts(client, experiment_id):
    train = mlflow.data.from_pandas(_df(8), name=unique_name("train"), targets="y")
    evald = mlflow.data.from_pandas(_df(4, seed=100), name=unique_name("eval"), targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(train, context="training")
        mlflow.log_input(evald, context="evaluation")
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    got = {(i.dataset.name, i.dataset.digest,
            {t.key: t.value for t in i.tags}["mlflow.data.context"]) for i in inputs}
    assert got == {(train.name, train.digest, "training"), (evald.name, evald.digest, "evaluation")}


def test_search_runs_by_dataset(client, experiment_id):
    name_a = unique_name("dsA")
    name_b = unique_name("dsB")
    a = mlflow.data.from_pandas(_df(3), name=name_a)
    b = mlflow.data.from_pandas(_df(6, seed=9), name=name_b)
    with mlflow.start_run(run_name="ra") as ra:
        mlflow.log_input(a, context="training")
    with mlflow.start_run(run_name="rb") as rb:
        mlflow.log_input(b, context="evaluation")
    with mlflow.start_run(run_name="none"):
        pass

    def names(flt):
        return sorted(r.info.run_name for r in client.search_runs([experiment_id], filter_string=flt))

    assert names(f"dataset.name = '{name_a}'") == ["ra"]
    assert names(f"datasets.name = '{name_b}'") == ["rb"]
    assert names("dataset.context = 'training'") == ["ra"]
    assert names("datasets.context = 'evaluation'") == ["rb"]
    assert names(f"dataset.digest = '{a.digest}'") == ["ra"]
    assert names(f"dataset.name IN ('{name_a}', '{name_b}')") == ["ra", "rb"]
    assert names(f"dataset.name LIKE '{name_a[:8]}%' AND dataset.context = 'training'") == ["ra"]

    df = mlflow.search_runs([experiment_id], filter_string=f"dataset.name = '{name_b}'")
    assert list(df["run_id"]) == [rb.info.run_id]
    assert ra.info.run_id != rb.info.run_id
