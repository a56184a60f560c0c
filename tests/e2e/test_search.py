import pytest
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from e2e_support import unique_name

# name: (acc, val loss, lr, team tag, status)
RUNS = {
    "r-a": (0.10, 1.5, "0.1", "alpha", "FINISHED"),
    "r-b": (0.50, 1.0, "0.01", "Beta", "FINISHED"),
    "r-c": (0.90, 0.5, "0.001", "alpha", "FAILED"),
    "r-d": (0.95, 0.2, "0.1", None, "FINISHED"),
    "r-e": (None, None, "0.05", "gamma", "KILLED"),
    "s-f": (0.70, 0.9, None, None, "FINISHED"),
}


@pytest.fixture(scope="module")
def corpus(tracking_uri):
    """One experiment with six runs of known metrics/params/tags (shared, read-only)."""
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(unique_name("search-corpus"))
    ids = {}
    for i, (rname, (acc, vloss, lr, team, status)) in enumerate(RUNS.items()):
        run = client.create_run(exp_id, run_name=rname, start_time=1_700_000_000_000 + i * 1000)
        metrics = []
        if acc is not None:
            metrics.append(Metric("acc", acc, 1_700_000_000_000, 0))
        if vloss is not None:
            metrics.append(Metric("val loss", vloss, 1_700_000_000_000, 0))
        params = [Param("lr", lr)] if lr is not None else []
        tags = [RunTag("team", team)] if team is not None else []
        tags.append(RunTag("idx", str(i)))
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run.info.run_id, status=status,
                              end_time=1_700_000_000_000 + i * 1000 + 500)
        ids[rname] = run.info.run_id
    return exp_id, ids


def names(client, exp_id, flt="", **kw):
    runs = client.search_runs([exp_id], filter_string=flt, **kw)
    return [r.info.run_name for r in runs]


def sset(client, exp_id, flt, **kw):
    return sorted(names(client, exp_id, flt, **kw))


@pytest.mark.parametrize("flt,expected", [
    ("metrics.acc > 0.5", ["r-c", "r-d", "s-f"]),
    ("metrics.acc >= 0.5", ["r-b", "r-c", "r-d", "s-f"]),
    ("metrics.acc < 0.5", ["r-a"]),
    ("metrics.acc <= 0.5", ["r-a", "r-b"]),
    ("metrics.acc = 0.9", ["r-c"]),
    ("metrics.acc != 0.9", ["r-a", "r-b", "r-d", "s-f"]),
    ("metric.acc > 0.6 AND metrics.acc < 0.92", ["r-c", "s-f"]),
    ("metrics.`val loss` < 0.6", ["r-c", "r-d"]),
    ('metrics."val loss" >= 1.0', ["r-a", "r-b"]),
    ("params.lr = '0.1'", ["r-a", "r-d"]),
    ('params.lr = "0.01"', ["r-b"]),
    ("params.lr != '0.1'", ["r-b", "r-c", "r-e"]),
    ("params.lr LIKE '0.0%'", ["r-b", "r-c", "r-e"]),
    ("parameters.lr LIKE '%1'", ["r-a", "r-b", "r-c", "r-d"]),
    ("tags.team = 'alpha'", ["r-a", "r-c"]),
    ("tags.team != 'alpha'", ["r-b", "r-e"]),
    ("tags.team LIKE 'beta'", []),
    ("tags.team ILIKE 'beta'", ["r-b"]),
    ("tags.team ILIKE '%A'", ["r-a", "r-b", "r-c", "r-e"]),
    ("tags.team IS NULL", ["r-d", "s-f"]),
    ("tags.team IS NOT NULL", ["r-a", "r-b", "r-c", "r-e"]),
    ("params.lr IS NULL", ["s-f"]),
    ("tags.`team` = 'gamma'", ["r-e"]),
    ("attributes.status = 'FINISHED'", ["r-a", "r-b", "r-d", "s-f"]),
    ("attributes.status != 'FINISHED'", ["r-c", "r-e"]),
    ("attributes.run_name LIKE 'r-%'", ["r-a", "r-b", "r-c", "r-d", "r-e"]),
    ("run_name = 's-f'", ["s-f"]),
    ("attributes.run_name ILIKE 'R-_'", ["r-a", "r-b", "r-c", "r-d", "r-e"]),
    ("`Run name` = 'r-b'", ["r-b"]),
    ("attributes.start_time >= 1700000003000", ["r-d", "r-e", "s-f"]),
    ("attributes.start_time < 1700000001000", ["r-a"]),
    ("attributes.end_time > 1700000004000", ["r-e", "s-f"]),
    ("metrics.acc > 0.2 AND params.lr = '0.1' AND tags.idx = '3'", ["r-d"]),
    ("metrics.acc > 0.2 and tags.team = 'alpha'", ["r-c"]),
])
def test_filters(client, corpus, flt, expected):
    exp_id, _ = corpus
    assert sset(client, exp_id, flt) == expected


def test_run_id_in_and_not_in(client, corpus):
    exp_id, ids = corpus
    flt = f"attributes.run_id IN ('{ids['r-a']}', '{ids['r-c']}')"
    assert sset(client, exp_id, flt) == ["r-a", "r-c"]
    flt = f"attributes.run_id NOT IN ('{ids['r-a']}', '{ids['r-c']}', '{ids['s-f']}')"
    assert sset(client, exp_id, flt) == ["r-b", "r-d", "r-e"]
    assert sset(client, exp_id, f"run_id = '{ids['r-e']}'") == ["r-e"]


def test_order_by_metric_missing_last(client, corpus):
    exp_id, _ = corpus
    asc = names(client, exp_id, order_by=["metrics.acc ASC"])
    assert asc == ["r-a", "r-b", "s-f", "r-c", "r-d", "r-e"]
    desc = names(client, exp_id, order_by=["metrics.acc DESC"])
    assert desc == ["r-d", "r-c", "s-f", "r-b", "r-a", "r-e"]
    quoted = names(client, exp_id, order_by=["metrics.`val loss` DESC"])
    assert quoted == ["r-a", "r-b", "s-f", "r-c", "r-d", "r-e"]


def test_order_by_param_tag_attribute(client, corpus):
    exp_id, _ = corpus
    # Params sort as strings; runs without the param come last.
    by_lr = names(client, exp_id, order_by=["params.lr ASC", "attributes.run_name ASC"])
    assert by_lr == ["r-c", "r-b", "r-e", "r-a", "r-d", "s-f"]
    assert names(client, exp_id, order_by=["attributes.run_name DESC"]) == [
        "s-f", "r-e", "r-d", "r-c", "r-b", "r-a"]
    assert names(client, exp_id, order_by=["attributes.start_time ASC"]) == list(RUNS)
    assert names(client, exp_id) == list(reversed(RUNS))  # default: start_time DESC
    # (all lower-case values, so the result does not depend on the database collation)
    by_tag = names(client, exp_id, "tags.team IS NOT NULL AND tags.team != 'Beta'",
                   order_by=["tags.team DESC", "run_name ASC"])
    assert by_tag == ["r-e", "r-a", "r-c"]


def test_max_results(client, corpus):
    exp_id, _ = corpus
    page = client.search_runs([exp_id], max_results=2, order_by=["attributes.run_name ASC"])
    assert [r.info.run_name for r in page] == ["r-a", "r-b"]
    assert page.token
    page2 = client.search_runs([exp_id], max_results=2, order_by=["attributes.run_name ASC"],
                               page_token=page.token)
    assert [r.info.run_name for r in page2] == ["r-c", "r-d"]


def test_search_runs_dataframe(client, corpus):
    exp_id, ids = corpus
    df = mlflow.search_runs([exp_id], filter_string="metrics.acc > 0.5",
                            order_by=["metrics.acc DESC"])
    assert list(df["run_id"]) == [ids["r-d"], ids["r-c"], ids["s-f"]]
    assert list(df["metrics.acc"]) == [0.95, 0.9, 0.7]
    assert list(df["params.lr"].fillna("none")) == ["0.1", "0.001", "none"]
    assert list(df["tags.team"].fillna("none")) == ["none", "alpha", "none"]
    assert list(df["status"]) == ["FINISHED", "FAILED", "FINISHED"]
    assert "tags.mlflow.runName" in df.columns

    runs = mlflow.search_runs([exp_id], filter_string="params.lr = '0.1'", output_format="list",
                              order_by=["attributes.run_name"])
    assert [r.info.run_id for r in runs] == [ids["r-a"], ids["r-d"]]
    assert runs[0].data.metrics["acc"] == 0.1


def test_search_by_experiment_name_and_multiple_experiments(client, corpus):
    exp_id, _ = corpus
    exp_name = client.get_experiment(exp_id).name
    df = mlflow.search_runs(experiment_names=[exp_name])
    assert len(df) == len(RUNS)
    other = client.create_experiment(unique_name("search-other"))
    client.create_run(other, run_name="other-run")
    both = client.search_runs([exp_id, other], filter_string="attributes.run_name LIKE '%-%'")
    assert len(both) == len(RUNS) + 1


def test_run_view_types(client, experiment_id):
    keep = client.create_run(experiment_id, run_name="keep").info.run_id
    gone = client.create_run(experiment_id, run_name="gone").info.run_id
    client.delete_run(gone)

    def ids(vt):
        return sorted(r.info.run_id for r in client.search_runs([experiment_id], run_view_type=vt))

    assert ids(ViewType.ACTIVE_ONLY) == [keep]
    assert ids(ViewType.DELETED_ONLY) == [gone]
    assert ids(ViewType.ALL) == sorted([keep, gone])
    df = mlflow.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert sorted(df["run_id"]) == sorted([keep, gone])


def test_paging_60_runs(client, experiment_id):
    created = set()
    t0 = 1_700_000_000_000
    for i in range(60):
        run = client.create_run(experiment_id, run_name=f"p{i:02d}", start_time=t0 + i)
        created.add(run.info.run_id)
        client.log_metric(run.info.run_id, "i", i, timestamp=t0, step=0)

    seen = []
    token = None
    sizes = []
    while True:
        page = client.search_runs([experiment_id], max_results=25, page_token=token,
                                  order_by=["metrics.i DESC"])
        sizes.append(len(page))
        seen += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
        assert len(sizes) < 10
    assert sizes == [25, 25, 10]
    assert len(seen) == len(set(seen)) == 60
    assert set(seen) == created

    # Fluent search pages internally through all of them.
    df = mlflow.search_runs([experiment_id], max_results=60)
    assert set(df["run_id"]) == created
    assert list(df["metrics.i"]) == sorted(df["metrics.i"], reverse=True)  # start_time DESC

    # Same with a filter across pages.
    seen = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string="metrics.i >= 10",
                                  max_results=25, page_token=token,
                                  order_by=["attributes.run_name ASC"])
        seen += [r.info.run_name for r in page]
        token = page.token
        if not token:
            break
    assert seen == [f"p{i:02d}" for i in range(10, 60)]


def test_invalid_filter_rejected(client, experiment_id):
    for bad in ("metrics.acc > 'x'", "params.lr > '0.1'", "params.lr = 0.1",
                "foo.bar = '1'", "metrics.acc >"):
        with pytest.raises(MlflowException) as ei:
            client.search_runs([experiment_id], filter_string=bad)
        assert ei.value.error_code == "INVALID_PARAMETER_VALUE", bad


def test_invalid_order_by_rejected(client, experiment_id):
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], order_by=["metrics.acc SIDEWAYS"])
    assert ei.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.slipway_only
@pytest.mark.parametrize("flt,expected", [
    ("metrics.acc > 0.92 OR params.lr = '0.01'", ["r-b", "r-d"]),
    ("(metrics.acc > 0.92 OR params.lr = '0.01') AND tags.team IS NOT NULL", ["r-b"]),
    ("tags.team = 'gamma' OR (metrics.acc < 0.2 AND params.lr = '0.1')", ["r-a", "r-e"]),
])
def test_slipway_or_and_parentheses(client, corpus, flt, expected):
    exp_id, _ = corpus
    assert sset(client, exp_id, flt) == expected
