"""The Python half of `slipway models convert`.

slipway runs this file with the interpreter of the virtual environment it manages:

    python convert.py PLAN.json REPORT.json

PLAN.json (written by slipway, crates/slipway/src/convert.rs) names a downloaded MLflow model
folder, the flavour to load it with and the rows to check on. This script loads the model the way
the flavour's MLflow loader does, converts it to ONNX (skl2onnx; onnxmltools for LightGBM and
XGBoost), runs both on the sample rows and writes `model.onnx` and REPORT.json.

REPORT.json is {"error": "..."} for a problem the user can fix (exit 2), said in one sentence
without a traceback; otherwise what was converted and what the check found (exit 0). Anything
else is a bug: Python prints its traceback (exit 1) and slipway shows its last line.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import pickle
import sys
import uuid
import warnings

# Only the model's own libraries may appear in a skops file: a type from anywhere else is
# refused rather than trusted because the file asks for it. (This trusts scikit-learn's tree
# storage, which skops flags because a crafted file can crash the process that predicts with
# it: that process is this converter, never the server, and the file was checked against the
# registered content before.)
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "lightgbm.", "xgboost.")
SKOPS_TRUSTED_TYPES = {"collections.OrderedDict"}  # in LightGBM's estimators
# Random rows when the model logged no input example and no --sample-rows were given.
RANDOM_ROWS = 100
# ONNX Runtime 1.17 (early 2024) and later run these; newer opsets would only narrow who can.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "input"


class Refusal(Exception):
    """A problem with the model or the rows that the user can fix: reported without a traceback."""


def main() -> int:
    plan_path, report_path = sys.argv[1], sys.argv[2]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = convert(plan)
        report["warnings"] = sorted({
            str(w.message).splitlines()[0]
            for w in caught
            if issubclass(w.category, (UserWarning, RuntimeWarning)) and str(w.message).strip()
        })[:10]
    except Refusal as refusal:
        write_json(report_path, {"error": str(refusal)})
        return 2
    write_json(report_path, report)
    return 0


def write_json(path: str, value: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


def inside(folder: str, relative: str) -> str:
    """A file the MLmodel names, which must stay inside the model folder."""
    path = os.path.realpath(os.path.join(folder, relative))
    if not path.startswith(os.path.realpath(folder) + os.sep):
        raise Refusal(f"the MLmodel file names '{relative}', which is outside the model folder")
    if not os.path.isfile(path):
        raise Refusal(f"the MLmodel file names '{relative}', which the model folder does not hold")
    return path


# ---------------------------------------------------------------------------------------------
# Loading, as mlflow.sklearn / mlflow.lightgbm / mlflow.xgboost load_model do.


def load_serialized(path: str, serialization_format: str):
    if serialization_format == "skops":
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        foreign = [t for t in untrusted
                   if not t.startswith(SKOPS_TRUSTED_PREFIXES) and t not in SKOPS_TRUSTED_TYPES]
        if foreign:
            raise Refusal(
                "the skops file asks to load types from outside scikit-learn, numpy, scipy, "
                f"LightGBM and XGBoost ({', '.join(foreign[:5])}); slipway does not load them")
        return skops.io.load(path, trusted=untrusted)
    if serialization_format == "cloudpickle":
        import cloudpickle

        with open(path, "rb") as f:
            return cloudpickle.load(f)
    if serialization_format == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)
    raise Refusal(f"unknown serialization_format '{serialization_format}' in the MLmodel file "
                  "(MLflow writes skops, cloudpickle or pickle)")


def load_model(plan: dict):
    flavor, conf, folder = plan["flavor"], plan["flavor_conf"], plan["model_dir"]
    if flavor == "sklearn":
        return load_serialized(inside(folder, conf.get("pickled_model", "model.pkl")),
                               conf.get("serialization_format", "pickle"))
    if flavor == "lightgbm":
        path = inside(folder, conf.get("data", "model.lgb"))
        model_class = conf.get("model_class", "lightgbm.basic.Booster")
        if model_class == "lightgbm.basic.Booster":
            import lightgbm

            return lightgbm.Booster(model_file=path)
        return load_serialized(path, conf.get("serialization_format", "cloudpickle"))
    if flavor == "xgboost":
        path = inside(folder, conf.get("data", "model.xgb"))
        model_class = conf.get("model_class", "xgboost.core.Booster")
        if not model_class.startswith("xgboost."):
            raise Refusal(f"the MLmodel file's model_class '{model_class}' is not an XGBoost class")
        module_name, _, class_name = model_class.rpartition(".")
        model = getattr(importlib.import_module(module_name), class_name)()
        model.load_model(path)
        return model
    raise Refusal(f"cannot load the flavour '{flavor}'")


# ---------------------------------------------------------------------------------------------
# What the model is: classifier or regressor, how many features, their names.


def final_estimator(model):
    """The last step of a (nested) Pipeline: what decides classifier or regressor."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def is_lightgbm_booster(model) -> bool:
    return type(model).__module__.startswith("lightgbm") and type(model).__name__ == "Booster"


def is_xgboost_booster(model) -> bool:
    return type(model).__module__.startswith("xgboost") and type(model).__name__ == "Booster"


def booster_objective(model) -> str:
    if is_lightgbm_booster(model):
        return str(model.dump_model(num_iteration=1).get("objective", ""))
    config = json.loads(model.save_config())
    return str(config["learner"]["objective"]["name"])


def kind_of(model) -> str:
    if is_lightgbm_booster(model) or is_xgboost_booster(model):
        objective = booster_objective(model)
        if objective.startswith(("binary", "multiclass", "multi:softprob", "multiclassova")):
            return "classifier"
        if objective.startswith(("regression", "reg:", "huber", "fair", "poisson", "quantile",
                                 "mape", "gamma", "tweedie", "count:")):
            return "regressor"
        raise Refusal(f"the booster's objective '{objective}' is neither a classification with "
                      "probabilities nor a regression; slipway converts those two")
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return "classifier"
    if is_regressor(model):
        return "regressor"
    raise Refusal(f"{type(model).__name__} is neither a classifier nor a regressor (a "
                  "transformer or clusterer); slipway converts models that predict")


def model_features(model) -> tuple[int | None, list[str] | None]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return len(names), [str(n) for n in names]
    count = getattr(model, "n_features_in_", None)
    if count is None and is_lightgbm_booster(model):
        count = model.num_feature()
    if count is None and is_xgboost_booster(model):
        count = model.num_features()
    return (int(count) if count is not None else None), None


NUMBER_TYPES = {"boolean", "integer", "long", "float", "double"}
NUMBER_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64"}


def signature_columns(signature_inputs: str | None):
    """From the MLmodel's input signature: (width, column names or None, column types)."""
    if not signature_inputs:
        return None, None, None
    specs = json.loads(signature_inputs)
    if specs and all(spec.get("type") == "tensor" for spec in specs):
        if len(specs) != 1:
            raise Refusal(f"the model's signature has {len(specs)} input tensors; slipway serves "
                          "models that take one matrix of numbers")
        tensor = specs[0]["tensor-spec"]
        shape = tensor.get("shape") or []
        if tensor.get("dtype") not in NUMBER_DTYPES or len(shape) != 2 or shape[1] < 1:
            raise Refusal(f"the model takes a {tensor.get('dtype')} tensor of shape {shape}; "
                          "slipway serves models that take rows of numbers")
        return int(shape[1]), None, ["double"] * int(shape[1])
    for index, spec in enumerate(specs):
        if spec.get("type") not in NUMBER_TYPES:
            which = f"column '{spec['name']}'" if spec.get("name") else f"column {index}"
            raise Refusal(f"the model's {which} is of type {spec.get('type')}; slipway serves "
                          "models whose inputs are numbers, so encode it in the model's pipeline "
                          "or before calling it")
    names = [spec.get("name") for spec in specs]
    return len(specs), (names if all(names) else None), [spec["type"] for spec in specs]


# ---------------------------------------------------------------------------------------------
# Sample rows.


def rows_from_json(value):
    """Rows and their column names (or None) from the shapes MLflow writes and serving reads."""
    if isinstance(value, dict):
        for key in ("dataframe_split", "dataframe_records", "inputs", "instances"):
            if key in value:
                return rows_from_json(value[key])
        if "data" in value:
            return value["data"], value.get("columns")
        raise Refusal("the rows are a JSON object without 'dataframe_split', "
                      "'dataframe_records', 'inputs', 'instances' or 'columns' and 'data'")
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        names = list(value[0].keys())
        return [[row.get(name) for name in names] for row in value], names
    if isinstance(value, list) and value and not isinstance(value[0], list):
        return [value], None
    if isinstance(value, list):
        return value, None
    raise Refusal("the rows are neither a JSON list nor an object")


def rows_from_file(path: str):
    if path.lower().endswith(".csv"):
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        if len(table) < 2:
            raise Refusal(f"{path} has no rows under its header line")
        header = table[0]
        has_header = any(not is_number(cell) for cell in header)
        return (table[1:], header) if has_header else (table, None)
    try:
        with open(path, encoding="utf-8") as f:
            return rows_from_json(json.load(f))
    except json.JSONDecodeError as error:
        raise Refusal(f"{path} is neither CSV (name it .csv) nor valid JSON: {error}") from None


def is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def arrange(rows, names, features: list[str] | None, width: int, what: str):
    """The rows as a float64 matrix in the model's feature order."""
    import numpy as np

    if names is not None and features is not None:
        missing = [f for f in features if f not in names]
        if missing:
            raise Refusal(f"the {what} have no column(s) {', '.join(missing[:5])} that the model "
                          "takes")
        positions = [names.index(f) for f in features]
        rows = [[row[p] for p in positions] for row in rows]
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise Refusal(f"the {what} hold values that are not numbers") from None
    if matrix.ndim != 2 or matrix.shape[1] != width:
        got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
        raise Refusal(f"the {what} have {got} values per row; the model takes {width}")
    if not np.isfinite(matrix).all():
        raise Refusal(f"the {what} hold missing or infinite values; give rows without them")
    return matrix


def random_rows(width: int, types: list[str] | None):
    import numpy as np

    generator = np.random.default_rng(0)
    columns = []
    for index in range(width):
        kind = types[index] if types else "double"
        if kind == "boolean":
            columns.append(generator.integers(0, 2, RANDOM_ROWS))
        elif kind in ("integer", "long"):
            columns.append(generator.integers(0, 10, RANDOM_ROWS))
        else:
            columns.append(generator.normal(0.0, 1.0, RANDOM_ROWS))
    return np.column_stack(columns).astype(np.float64)


def sample_rows(plan: dict, features, width: int, types):
    if plan.get("sample_rows"):
        rows, names = rows_from_file(plan["sample_rows"])
        return arrange(rows, names, features, width, "sample rows"), "--sample-rows"
    example = plan.get("input_example")
    if example:
        with open(example, encoding="utf-8") as f:
            rows, names = rows_from_json(json.load(f))
        return arrange(rows, names, features, width, "model's input example"), "the input example"
    return random_rows(width, types), f"{RANDOM_ROWS} random rows (no input example was logged)"


# ---------------------------------------------------------------------------------------------
# Converting.


def register_boosters_with_skl2onnx() -> None:
    """LGBM and XGB scikit-learn wrappers (alone or in a Pipeline) go through skl2onnx with the
    onnxmltools converters, the way skl2onnx documents it."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes)

    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
            convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
        update_registered_converter(
            LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes,
            convert_lightgbm, options={"split": None})
    except ImportError:
        pass
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(
            XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
            convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
            convert_xgboost)
    except ImportError:
        pass


def forget_xgboost_feature_names(model) -> None:
    """onnxmltools reads XGBoost's features as f0, f1, ...: positions, which the ONNX input
    keeps; a booster trained on a DataFrame has the column names instead, which it refuses."""
    estimator = final_estimator(model)
    if is_xgboost_booster(estimator):
        estimator.feature_names = None
    elif type(estimator).__module__.startswith("xgboost") and hasattr(estimator, "get_booster"):
        estimator.get_booster().feature_names = None


def to_onnx(model, kind: str, width: int):
    """The ONNX model and the name and version of the converter used. Changes XGBoost models:
    run the original before."""
    forget_xgboost_feature_names(model)
    if is_lightgbm_booster(model) or is_xgboost_booster(model):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        initial = [(INPUT_NAME, FloatTensorType([None, width]))]
        # onnxmltools picks the opset its converters support.
        if is_lightgbm_booster(model):
            converted = onnxmltools.convert_lightgbm(model, initial_types=initial, zipmap=False)
        else:
            converted = onnxmltools.convert_xgboost(model, initial_types=initial)
        return converted, f"onnxmltools {onnxmltools.__version__}"

    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType

    register_boosters_with_skl2onnx()
    options = {}
    if kind == "classifier":
        # A plain probabilities matrix instead of a list of {class: probability} maps.
        options[id(final_estimator(model))] = {"zipmap": False}
    converted = skl2onnx.convert_sklearn(
        model, initial_types=[(INPUT_NAME, FloatTensorType([None, width]))], options=options,
        target_opset=TARGET_OPSET)
    converter = f"skl2onnx {skl2onnx.__version__}"
    if type(final_estimator(model)).__module__.startswith(("lightgbm", "xgboost")):
        import onnxmltools

        converter += f" with onnxmltools {onnxmltools.__version__}"
    return converted, converter


# ---------------------------------------------------------------------------------------------
# Checking: the original and the ONNX model on the same rows.


def original_predictions(model, kind: str, matrix, features):
    """(labels, probabilities) of a classifier or (None, values) of a regressor."""
    import numpy as np

    if is_lightgbm_booster(model) or is_xgboost_booster(model):
        if is_xgboost_booster(model):
            import xgboost

            raw = model.predict(xgboost.DMatrix(matrix))
        else:
            raw = model.predict(matrix)
        raw = np.asarray(raw, dtype=np.float64)
        if kind == "regressor":
            return None, raw.reshape(len(matrix), -1)
        probabilities = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
        return probabilities.argmax(axis=1), probabilities
    rows = matrix
    if features is not None:
        import pandas

        rows = pandas.DataFrame(matrix, columns=features)
    if kind == "regressor":
        return None, np.asarray(model.predict(rows), dtype=np.float64).reshape(len(matrix), -1)
    return np.asarray(model.predict(rows)), np.asarray(model.predict_proba(rows), dtype=np.float64)


def onnx_predictions(session, kind: str, matrix):
    import numpy as np

    outputs = session.run(None, {INPUT_NAME: matrix.astype(np.float32)})
    if kind == "regressor":
        return None, np.asarray(outputs[0], dtype=np.float64).reshape(len(matrix), -1)
    named = {o.name: value for o, value in zip(session.get_outputs(), outputs)}
    labels = named.get("label", outputs[0])
    probabilities = named.get("probabilities", outputs[-1])
    return np.asarray(labels), np.asarray(probabilities, dtype=np.float64)


def compare(original, converted, kind: str, tolerance: float) -> dict:
    import numpy as np

    labels, values = original
    onnx_labels, onnx_values = converted
    if values.shape != onnx_values.shape:
        raise Refusal(f"the ONNX model answers {onnx_values.shape[1:]} values per row where the "
                      f"original answers {values.shape[1:]}; the conversion is not faithful")
    difference = np.abs(values - onnx_values)
    if kind == "regressor":
        # float32 keeps about 7 digits: a prediction of 300 cannot match to 1e-4 absolutely.
        allowed = tolerance * np.maximum(1.0, np.abs(values))
    else:
        allowed = np.full_like(values, tolerance)
    over = (difference > allowed).any(axis=1)
    result = {
        "rows": int(len(values)),
        "max_abs_diff": float(difference.max()) if difference.size else 0.0,
        "tolerance": tolerance,
        "rows_within_tolerance": int((~over).sum()),
    }
    disagree = np.zeros(len(values), dtype=bool)
    if labels is not None:
        disagree = labels.astype(np.float64) != onnx_labels.astype(np.float64)
        result["labels_agree"] = int((~disagree).sum())
    bad = np.flatnonzero(over | disagree)
    if bad.size:
        row = int(bad[0])
        detail = (f"row {row}: original {values[row].round(6).tolist()}, "
                  f"ONNX {onnx_values[row].round(6).tolist()}")
        if labels is not None:
            detail += f", labels {labels[row]} and {onnx_labels[row]}"
        result["first_difference"] = detail
    result["passed"] = not bad.size
    return result


# ---------------------------------------------------------------------------------------------


def onnx_output_specs(session) -> list[dict]:
    """The ONNX model's outputs as MLflow tensor specs, refusing what slipway cannot serve."""
    dtypes = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64"}
    specs = []
    for output in session.get_outputs():
        dtype = dtypes.get(output.type)
        if dtype is None:
            raise Refusal(
                f"the converted model's output '{output.name}' is of type {output.type}; slipway "
                "serves numbers, so a classifier's classes must be numbers: encode them "
                "(sklearn.preprocessing.LabelEncoder) and log the model again")
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in (output.shape or [])]
        specs.append({"name": output.name, "type": "tensor",
                      "tensor-spec": {"dtype": dtype, "shape": shape}})
    return specs


def library_of(model) -> str:
    root = type(final_estimator(model)).__module__.split(".")[0]
    package = {"sklearn": "scikit-learn"}.get(root, root)
    try:
        from importlib.metadata import version

        return f"{package} {version(package)}"
    except Exception:  # a model class outside any installed distribution
        return package


def convert(plan: dict) -> dict:
    import numpy as np
    import onnxruntime

    model = load_model(plan)
    kind = kind_of(model)
    classes = getattr(final_estimator(model), "classes_", None)
    if kind == "classifier" and classes is not None and np.asarray(classes).dtype.kind in "OUS":
        shown = ", ".join(repr(str(c)) for c in list(classes)[:3])
        raise Refusal(f"the classifier's classes are strings ({shown}, ...); slipway serves "
                      "numbers: encode the classes as integers (sklearn.preprocessing."
                      "LabelEncoder) and log the model again")

    declared_width, declared_names, types = signature_columns(plan.get("signature_inputs"))
    model_width, model_names = model_features(model)
    width = declared_width or model_width
    if width is None:
        raise Refusal("neither the model's signature nor the model says how many features it "
                      "takes; log it with a signature or an input example")
    if declared_width and model_width and declared_width != model_width:
        raise Refusal(f"the model's signature declares {declared_width} inputs but the model was "
                      f"trained on {model_width} features")
    # The ONNX graph takes values in the order the model was trained on; serving puts named
    # request columns into the signature's order, so the signature lists them in that order.
    # Rows name their columns as the signature does (the user's data).
    features = declared_names or model_names
    signature_inputs = plan.get("signature_inputs")
    if declared_names and model_names and sorted(declared_names) == sorted(model_names):
        specs = {spec["name"]: spec for spec in json.loads(signature_inputs)}
        signature_inputs = json.dumps([specs[name] for name in model_names])
        features = model_names
    # Otherwise, with as many of each, the library renamed the columns it was given in order
    # (LightGBM writes "mean radius" as "mean_radius"): they match by position.

    matrix, row_source = sample_rows(plan, features, width, types)
    original = original_predictions(model, kind, matrix, model_names)
    try:
        onnx_model, converter = to_onnx(model, kind, width)
    except Refusal:
        raise
    except Exception as error:  # the converters' own messages say what they cannot convert
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Refusal(f"{type(model).__name__} could not be converted to ONNX: {message}") from None

    onnx_path = os.path.join(plan["out_dir"], "model.onnx")
    with open(onnx_path, "wb") as f:
        f.write(onnx_model.SerializeToString())
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    outputs = onnx_output_specs(session)
    check = compare(original, onnx_predictions(session, kind, matrix), kind,
                    float(plan["tolerance"]))
    check["row_source"] = row_source

    import onnx

    if signature_inputs is None:
        signature_inputs = json.dumps([{"type": "tensor", "tensor-spec": {
            "dtype": "float32", "shape": [-1, width]}}])
    return {
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "library": library_of(model),
        "kind": kind,
        "features": width,
        "converter": converter,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "signature_inputs": signature_inputs,
        "signature_outputs": json.dumps(outputs),
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S.%f"),
        "check": check,
    }


if __name__ == "__main__":
    sys.exit(main())
