"""Error behaviour: through the client (error_code) and on the wire (HTTP status + JSON body)."""

import pytest
from mlflow.exceptions import MlflowException

from e2e_support import assert_error_body, unique_name

MISSING_RUN = "0" * 32


def _code(fn, *a, **kw):
    with pytest.raises(MlflowException) as ei:
        fn(*a, **kw)
    return ei.value.error_code


# ---------------------------------------------------------------- through the client

def test_client_missing_run(client):
    assert _code(client.get_run, MISSING_RUN) == "RESOURCE_DOES_NOT_EXIST"
    assert _code(client.log_param, MISSING_RUN, "k", "v") == "RESOURCE_DOES_NOT_EXIST"
    assert _code(client.set_terminated, MISSING_RUN) == "RESOURCE_DOES_NOT_EXIST"
    assert _code(client.delete_run, MISSING_RUN) == "RESOURCE_DOES_NOT_EXIST"


def test_client_missing_experiment(client):
    assert _code(client.get_experiment, "987654321") == "RESOURCE_DOES_NOT_EXIST"
    assert _code(client.create_run, "987654321") == "RESOURCE_DOES_NOT_EXIST"
    assert _code(client.delete_experiment, "987654321") == "RESOURCE_DOES_NOT_EXIST"
    assert _code(client.rename_experiment, "987654321", unique_name("x")) == "RESOURCE_DOES_NOT_EXIST"


def test_client_duplicate_experiment(client):
    name = unique_name("dup")
    client.create_experiment(name)
    assert _code(client.create_experiment, name) == "RESOURCE_ALREADY_EXISTS"
    other = client.create_experiment(unique_name("dup-other"))
    # Renaming onto a taken name: MLflow answers 400 BAD_REQUEST (leaking the SQL
    # IntegrityError text); RESOURCE_ALREADY_EXISTS is accepted too.
    assert _code(client.rename_experiment, other, name) in ("BAD_REQUEST", "RESOURCE_ALREADY_EXISTS")
    assert client.get_experiment(other).name != name


def test_client_duplicate_registered_model(client):
    name = unique_name("dup-rm")
    client.create_registered_model(name)
    assert _code(client.create_registered_model, name) == "RESOURCE_ALREADY_EXISTS"


def test_client_bad_filters(client, experiment_id):
    assert _code(client.search_runs, [experiment_id], "metrics.acc > 'x'") == "INVALID_PARAMETER_VALUE"
    assert _code(client.search_runs, [experiment_id], "nonsense") == "INVALID_PARAMETER_VALUE"
    assert _code(client.search_experiments, filter_string="bogus.x = 'a'") == "INVALID_PARAMETER_VALUE"
    assert _code(client.search_registered_models, "tags.x >= 'a'") == "INVALID_PARAMETER_VALUE"
    assert _code(client.search_model_versions, "bogus = 'a'") == "INVALID_PARAMETER_VALUE"


def test_client_invalid_metric_and_empty_name(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    assert _code(client.create_experiment, "") == "INVALID_PARAMETER_VALUE"
    assert _code(client.log_param, run_id, "k" * 251, "v") == "INVALID_PARAMETER_VALUE"


# ---------------------------------------------------------------- on the wire

def test_raw_missing_run(api):
    r = api.get("runs/get", params={"run_id": MISSING_RUN})
    body = assert_error_body(r, "RESOURCE_DOES_NOT_EXIST", status=404)
    assert MISSING_RUN in body["message"]
    assert r.headers["content-type"].startswith("application/json")


def test_raw_missing_experiment(api):
    assert_error_body(api.get("experiments/get", params={"experiment_id": "987654321"}),
                      "RESOURCE_DOES_NOT_EXIST", status=404)
    assert_error_body(api.get("experiments/get-by-name",
                              params={"experiment_name": unique_name("nope")}),
                      "RESOURCE_DOES_NOT_EXIST", status=404)
    assert_error_body(api.post("runs/create", json={"experiment_id": "987654321"}),
                      "RESOURCE_DOES_NOT_EXIST", status=404)


def test_raw_duplicate_is_400_not_409(api):
    name = unique_name("raw-dup")
    assert api.post("experiments/create", json={"name": name}).status_code == 200
    assert_error_body(api.post("experiments/create", json={"name": name}),
                      "RESOURCE_ALREADY_EXISTS", status=400)
    assert api.post("registered-models/create", json={"name": name}).status_code == 200
    assert_error_body(api.post("registered-models/create", json={"name": name}),
                      "RESOURCE_ALREADY_EXISTS", status=400)


def test_raw_missing_required_field(api):
    assert_error_body(api.post("experiments/create", json={}), "INVALID_PARAMETER_VALUE", status=400)
    body = assert_error_body(api.post("runs/log-metric", json={"run_id": MISSING_RUN}),
                             "INVALID_PARAMETER_VALUE", status=400)
    assert "key" in body["message"]
    assert_error_body(api.get("runs/get"), "INVALID_PARAMETER_VALUE", status=400)


@pytest.mark.parametrize("path,payload", [
    ("experiments/create", {"name": 5}),
    ("experiments/create", {"name": ["a"]}),
    ("runs/search", {"experiment_ids": ["0"], "max_results": "abc"}),
    ("runs/search", {"experiment_ids": "0"}),
    ("runs/log-metric", {"run_id": MISSING_RUN, "key": "a", "value": "abc", "timestamp": 1}),
])
def test_raw_wrong_types(api, path, payload):
    assert_error_body(api.post(path, json=payload), "INVALID_PARAMETER_VALUE", status=400)


def test_raw_huge_max_results(api):
    assert_error_body(api.post("runs/search", json={"experiment_ids": ["0"], "max_results": 50001}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.post("experiments/search", json={"max_results": 100000}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.get("registered-models/search", params={"max_results": 100000}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.post("runs/search", json={"experiment_ids": ["0"], "max_results": -1}),
                      "INVALID_PARAMETER_VALUE", status=400)
    # The limit itself is fine.
    assert api.post("runs/search", json={"experiment_ids": ["0"], "max_results": 50000}).status_code == 200


@pytest.mark.parametrize("token", ["garbage!!", "aGVsbG8=", "%%%"])
def test_raw_garbage_page_token(api, token):
    assert_error_body(api.post("runs/search", json={"experiment_ids": ["0"], "page_token": token}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.post("experiments/search", json={"max_results": 10, "page_token": token}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.get("registered-models/search", params={"page_token": token}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.get("model-versions/search", params={"page_token": token}),
                      "INVALID_PARAMETER_VALUE", status=400)


def test_raw_bad_filter(api):
    body = assert_error_body(
        api.post("runs/search", json={"experiment_ids": ["0"], "filter": "metrics.acc > 'x'"}),
        "INVALID_PARAMETER_VALUE", status=400)
    assert body["message"]


def test_raw_missing_alias_is_400(api):
    name = unique_name("raw-alias")
    api.post("registered-models/create", json={"name": name})
    assert_error_body(api.get("registered-models/alias", params={"name": name, "alias": "nope"}),
                      "INVALID_PARAMETER_VALUE", status=400)
    assert_error_body(api.get("model-versions/get", params={"name": name, "version": "9"}),
                      "RESOURCE_DOES_NOT_EXIST", status=404)
    assert_error_body(api.get("registered-models/get", params={"name": unique_name("none")}),
                      "RESOURCE_DOES_NOT_EXIST", status=404)


def test_raw_log_batch_limits(api, experiment_id):
    run_id = api.post("runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    metrics = [{"key": "a", "value": 1.0, "timestamp": 1, "step": i} for i in range(1001)]
    assert_error_body(api.post("runs/log-batch", json={"run_id": run_id, "metrics": metrics}),
                      "INVALID_PARAMETER_VALUE", status=400)
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    assert_error_body(api.post("runs/log-batch", json={"run_id": run_id, "params": params}),
                      "INVALID_PARAMETER_VALUE", status=400)
    # All-or-nothing: nothing of the rejected batches was stored.
    assert api.get("metrics/get-history", params={"run_id": run_id, "metric_key": "a"}).json().get("metrics", []) == []
    assert "params" not in api.get("runs/get", params={"run_id": run_id}).json()["run"]["data"]


def test_raw_content_type_required(api):
    r = api.post("experiments/create", data='{"name": "x"}',
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error_body(r, "INVALID_PARAMETER_VALUE", status=400)


def test_raw_quirk_get_history_unknown_run_is_empty_200(api):
    r = api.get("metrics/get-history", params={"run_id": MISSING_RUN, "metric_key": "x"})
    assert r.status_code == 200
    assert r.json() == {}


def test_raw_unknown_route_404(api):
    assert api.get("nope-not-an-endpoint").status_code == 404


def test_raw_health_and_server_info(api):
    r = api.get("/health")
    assert r.status_code == 200
    r = api.get("/api/3.0/mlflow/server-info")
    assert r.status_code == 200
    info = r.json()
    assert info["multipart_uploads_enabled"] is False
    assert info["workspaces_enabled"] is False


# ---- checks where MLflow 3.17.2 itself misbehaves (answers 200 or 500); slipway must be 4xx

@pytest.mark.slipway_only
def test_raw_malformed_json_is_4xx(api):
    # MLflow: experiments/create gives 400 "Missing value for required parameter 'name'"
    # (the body is parsed as {}), but runs/search answers 200 {}.
    for path in ("experiments/create", "runs/search", "runs/log-batch"):
        r = api.post(path, data='{"experiment_ids": [', headers={"Content-Type": "application/json"})
        assert_error_body(r, status=400)


@pytest.mark.slipway_only
def test_raw_json_body_not_an_object_is_4xx(api):
    # MLflow answers 500 with an HTML page.
    r = api.post("experiments/create", json=[1, 2])
    assert_error_body(r, "INVALID_PARAMETER_VALUE", status=400)


@pytest.mark.slipway_only
def test_raw_bad_enum_is_4xx(api):
    # MLflow answers 200 {} (the body fails to parse and is treated as empty).
    r = api.post("runs/search", json={"experiment_ids": ["0"], "run_view_type": "BOGUS"})
    assert_error_body(r, "INVALID_PARAMETER_VALUE", status=400)


@pytest.mark.slipway_only
def test_raw_unknown_route_and_method_are_json(api):
    # MLflow answers Flask's HTML 404/405 pages.
    r = api.get("nope-not-an-endpoint")
    assert r.status_code == 404
    assert isinstance(r.json().get("error_code"), str)
    r = api.get("runs/create")
    assert r.status_code in (404, 405)
    assert isinstance(r.json().get("error_code"), str)
