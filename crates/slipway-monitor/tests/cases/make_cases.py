"""Builds the engine's reference cases: seeded samples and what scipy and Evidently compute on them.

Samples are not stored: each is a small spec that the Rust tests regenerate bit for bit (a
splitmix64 stream turned into values with +, *, floor only, which IEEE arithmetic rounds the
same in both languages). Expected values come from scipy (KS, kstwo, smirnov, Wasserstein,
Anderson-Darling, contingency chi-square and G) and from Evidently's own stattest functions
(its registry, called on the cleaned series as `get_one_column_drift` does), so the evidently
mode is checked against the real thing.

Run: python make_cases.py > cases.json   (see README.md for the venv)
"""

import json
import math
import sys
import warnings

import numpy as np
import pandas as pd
import scipy
from scipy import stats, special

warnings.filterwarnings("ignore")

import evidently  # noqa: E402
from evidently.legacy.calculations.stattests.registry import get_registered_stattest, get_stattest  # noqa: E402
from evidently.legacy.core import ColumnType  # noqa: E402

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
DRAWS = 5  # draws per value: one for missingness, up to four for the shape


def uniforms(seed, n):
    """u[i, j] = mix(seed + (i*DRAWS + j + 1) * golden) >> 11, scaled to [0, 1)."""
    idx = np.arange(1, n * DRAWS + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + idx * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0**-53)
    return u.reshape(n, DRAWS)


def generate(spec):
    """Values of a spec as Python objects (None for missing)."""
    n = spec["n"]
    u = uniforms(spec["seed"], n)
    loc, scale, k = spec.get("loc", 0.0), spec.get("scale", 1.0), spec.get("k", 10)
    shape, kind = spec["shape"], spec["kind"]
    if shape == "uniform":
        x = loc + scale * u[:, 1]
    elif shape == "normalish":
        x = loc + scale * ((((u[:, 1] + u[:, 2]) + u[:, 3]) + u[:, 4]) - 2.0)
    elif shape == "skew":
        x = loc + scale * (u[:, 1] * u[:, 1])
    elif shape == "ties":
        x = loc + scale * np.floor(u[:, 1] * k)
    elif shape == "levels":  # integer level index, skewed when power == 2
        v = u[:, 1] * u[:, 1] if spec.get("power", 1) == 2 else u[:, 1]
        x = np.floor(v * k) + loc
    elif shape == "const":
        x = np.full(n, loc)
    else:
        raise ValueError(shape)
    missing = u[:, 0] < spec.get("missing", 0.0)
    out = []
    for value, miss in zip(x.tolist(), missing.tolist()):
        if miss:
            out.append(None)
        elif kind == "float":
            out.append(float(value))
        elif kind == "int":
            out.append(int(value))
        elif kind == "str":
            out.append("c%d" % int(value))
        elif kind == "bool":
            out.append(bool(int(value) % 2))
        else:
            raise ValueError(kind)
    return out


def series(values, kind):
    clean = [v for v in values if v is not None]
    if kind == "float":
        return pd.Series(np.array(clean, dtype=np.float64))
    if kind == "int":
        return pd.Series(np.array(clean, dtype=np.int64))
    if kind == "bool":
        return pd.Series(np.array(clean, dtype=bool))
    return pd.Series(np.array(clean, dtype=object))


def fnum(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


NUMERIC_TESTS = ["ks", "wasserstein", "psi", "jensenshannon", "kl_div", "hellinger", "anderson", "ed", "t_test", "mannw"]
CATEGORICAL_TESTS = ["chisquare", "z", "psi", "jensenshannon", "kl_div", "hellinger", "g_test"]


def evidently_scores(ref, cur, column_type, names):
    ft = ColumnType.Numerical if column_type == "numerical" else ColumnType.Categorical
    out = {}
    for name in names:
        try:
            test = get_registered_stattest(name, ft)
            res = test(ref.copy(), cur.copy(), ft, None)
            out[name] = {"score": fnum(res.drift_score), "drifted": bool(res.drifted), "threshold": res.actual_threshold}
        except Exception as exc:  # Evidently refuses some inputs: say which
            out[name] = {"error": type(exc).__name__}
    default = get_stattest(ref, cur, ft, None)
    res = default(ref.copy(), cur.copy(), ft, None)
    out["default"] = {
        "method": default.name,
        "score": fnum(res.drift_score),
        "drifted": bool(res.drifted),
        "threshold": res.actual_threshold,
    }
    return out


def numeric_case(name, ref_spec, cur_spec, column_type="numerical", tests=None):
    rv, cv = generate(ref_spec), generate(cur_spec)
    kind = ref_spec["kind"]
    ref, cur = series(rv, kind), series(cv, kind)
    case = {"name": name, "column_type": column_type, "reference": ref_spec, "current": cur_spec}
    if len(ref) == 0 or len(cur) == 0:
        case["empty"] = True
        return case
    r = ref.to_numpy(dtype=np.float64)
    c = cur.to_numpy(dtype=np.float64)
    ks = stats.ks_2samp(r, c)
    exact = max(len(r), len(c)) <= 10000
    case["ks"] = {"statistic": fnum(ks.statistic), "p_value": fnum(ks.pvalue), "method": "exact" if exact else "asymptotic"}
    case["wasserstein_raw"] = fnum(stats.wasserstein_distance(r, c))
    case["reference_std"] = fnum(np.std(r))
    if len(np.unique(np.concatenate([r, c]))) >= 2 and len(r) + len(c) >= 4:
        ad = stats.anderson_ksamp([r, c], variant="midrank")
        case["anderson"] = {"statistic": fnum(ad.statistic), "p_value": fnum(ad.pvalue)}
    if tests is None:
        tests = NUMERIC_TESTS if column_type == "numerical" else CATEGORICAL_TESTS
    case["evidently"] = evidently_scores(ref, cur, column_type, tests)
    return case


def categorical_case(name, ref_spec, cur_spec, tests=None):
    rv, cv = generate(ref_spec), generate(cur_spec)
    kind = ref_spec["kind"]
    ref, cur = series(rv, kind), series(cv, kind)
    case = {"name": name, "column_type": "categorical", "reference": ref_spec, "current": cur_spec}
    if len(ref) == 0 or len(cur) == 0:
        case["empty"] = True
        return case
    case["evidently"] = evidently_scores(ref, cur, "categorical", tests or CATEGORICAL_TESTS)
    # The two-sample test of auto mode: categories of the reference only (unseen ones apart).
    rc, cc = ref.value_counts(), cur.value_counts()
    keys = sorted(rc.index, key=str)
    table = np.array([[rc.get(k, 0) for k in keys], [cc.get(k, 0) for k in keys]], dtype=float)
    if table.shape[1] >= 2 and table[1].sum() > 0:
        chi = stats.chi2_contingency(table, correction=False)
        g = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
        case["contingency"] = {
            "chi2": fnum(chi.statistic),
            "chi2_p": fnum(chi.pvalue),
            "g": fnum(g.statistic),
            "g_p": fnum(g.pvalue),
        }
    return case


# Evidently's display names (what a 0.7 report shows) to registry names.
DISPLAY_TO_NAME = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Jensen-Shannon distance": "jensenshannon",
    "Wasserstein distance (normed)": "wasserstein",
}


def dataset_case(name, columns):
    """A whole `Report([DataDriftPreset()])` run: type inference, test choice, dataset drift."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = pd.DataFrame({c: generate(r) for c, r, _ in columns})
    cur = pd.DataFrame({c: generate(k) for c, _, k in columns})
    snapshot = Report([DataDriftPreset()]).run(cur, ref).dict()
    expected = {"columns": {}}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            expected["count"] = metric["value"]["count"]
            expected["share"] = metric["value"]["share"]
            expected["drift_share"] = config["drift_share"]
        elif config["type"].endswith("ValueDrift"):
            expected["columns"][config["column"]] = {
                "method": DISPLAY_TO_NAME.get(config["method"], config["method"]),
                "score": fnum(metric["value"]),
                "threshold": config["threshold"],
            }
    return {"name": name, "columns": [{"name": c, "reference": r, "current": k} for c, r, k in columns],
            "expected": expected}


def spec(seed, n, shape, kind="float", **kw):
    return {"seed": seed, "n": n, "shape": shape, "kind": kind, **kw}


def main():
    numeric = []
    seed = 1000
    # Small and medium sizes, shifted and not, continuous and tied.
    sizes = [(1, 1), (1, 6), (6, 1), (3, 3), (7, 13), (20, 20), (50, 80), (100, 100), (300, 200),
             (1000, 1000), (1000, 1001), (999, 2002), (2500, 2400)]
    for n1, n2 in sizes:
        for shape, shift in [("normalish", 0.0), ("normalish", 0.3), ("skew", 0.1), ("uniform", 0.05)]:
            seed += 1
            numeric.append(numeric_case(
                f"{shape}_{n1}_{n2}_shift{shift}",
                spec(seed, n1, shape), spec(seed + 50000, n2, shape, loc=shift)))
    for n1, n2, k in [(40, 60, 4), (200, 200, 3), (500, 700, 25), (1500, 1500, 4), (3000, 2000, 30), (12000, 11000, 7)]:
        seed += 1
        numeric.append(numeric_case(f"ties_{n1}_{n2}_k{k}", spec(seed, n1, "ties", k=k, scale=0.5),
                                    spec(seed + 50000, n2, "ties", k=k, scale=0.5, loc=0.5 if k > 5 else 0.0)))
    # Edge cases: constant columns, a single value, missing values.
    numeric.append(numeric_case("constant_equal", spec(1, 50, "const", loc=2.0), spec(2, 40, "const", loc=2.0)))
    numeric.append(numeric_case("constant_different", spec(1, 50, "const", loc=2.0), spec(2, 40, "const", loc=3.0)))
    numeric.append(numeric_case("constant_large", spec(1, 1500, "const", loc=2.0), spec(2, 1400, "normalish", loc=2.0)))
    numeric.append(numeric_case("constant_vs_spread", spec(1, 30, "const", loc=0.5), spec(2, 30, "uniform")))
    numeric.append(numeric_case("single_vs_many", spec(3, 1, "const", loc=0.2), spec(4, 100, "uniform")))
    # Mann-Whitney's exact branch: one side of at most 8 values, no ties.
    for n1, n2, shift in [(5, 3000, 0.0), (8, 8, 0.4), (3, 7, 0.2), (8, 500, 0.3), (9, 9, 0.1)]:
        numeric.append(numeric_case(f"small_side_{n1}_{n2}", spec(60 + n1, n1, "uniform"),
                                    spec(70 + n2, n2, "uniform", loc=shift)))
    numeric.append(numeric_case("missing_10pct", spec(5, 400, "normalish", missing=0.1),
                                spec(6, 300, "normalish", loc=0.2, missing=0.2)))
    numeric.append(numeric_case("boundary_ref1001_missing", spec(7, 1001, "normalish", missing=0.002),
                                spec(8, 1001, "normalish", loc=0.05)))
    numeric.append(numeric_case("all_missing_current", spec(9, 100, "uniform"), spec(10, 50, "uniform", missing=1.1)))
    # Integer columns: declared numerical, and as Evidently infers them (categorical, <= 10 values).
    numeric.append(numeric_case("int_numerical_many", spec(11, 600, "levels", kind="int", k=40),
                                spec(12, 500, "levels", kind="int", k=40, power=2)))
    numeric.append(numeric_case("int_numerical_few", spec(13, 600, "levels", kind="int", k=3),
                                spec(14, 500, "levels", kind="int", k=3, power=2)))
    numeric.append(numeric_case("int_categorical", spec(15, 800, "levels", kind="int", k=8),
                                spec(16, 900, "levels", kind="int", k=8, power=2), column_type="categorical"))
    numeric.append(numeric_case("int_binary", spec(17, 300, "levels", kind="int", k=2),
                                spec(18, 300, "levels", kind="int", k=2, power=2)))
    # The exact / asymptotic KS boundary and large n.
    big = [("exact_square_10000", 10000, 10000, 0.02), ("exact_10000_9999", 10000, 9999, 0.03),
           ("asymp_10001_10000", 10001, 10000, 0.03), ("asymp_10001_10000_null", 10001, 10000, 0.0),
           ("asymp_10001_5000", 10001, 5000, 0.05), ("asymp_10001_100", 10001, 100, 0.1),
           ("asymp_10001_30", 10001, 30, 0.3), ("asymp_20000_20000_small", 20000, 20000, 0.01),
           ("asymp_100000_100000_null", 100000, 100000, 0.0), ("asymp_200000_150000", 200000, 150000, 0.02)]
    for name, n1, n2, shift in big:
        seed += 1
        numeric.append(numeric_case(name, spec(seed, n1, "normalish"), spec(seed + 50000, n2, "normalish", loc=shift),
                                    tests=["ks", "wasserstein", "psi", "jensenshannon", "hellinger"]))

    categorical = []
    cat_specs = [
        ("binary_equal", 200, 200, 2, 1, 0.0, 1, 0.0),
        ("binary_shift", 150, 180, 2, 1, 0.0, 2, 0.0),
        ("three_small", 60, 40, 3, 1, 0.0, 1, 0.0),
        ("five_shift", 500, 400, 5, 1, 0.0, 2, 0.0),
        ("unseen_category", 300, 300, 4, 1, 0.0, 1, 1.0),
        ("many_categories", 5000, 4000, 50, 2, 0.0, 2, 0.0),
        ("large_shift", 3000, 2000, 6, 1, 0.0, 2, 0.0),
        ("with_missing", 400, 350, 4, 1, 0.1, 1, 0.0),
        ("single_category", 100, 80, 1, 1, 0.0, 1, 0.0),
        ("single_vs_other", 100, 80, 1, 1, 0.0, 1, 1.0),
        ("n_one", 1, 1, 3, 1, 0.0, 1, 0.0),
    ]
    for name, n1, n2, k, p1, miss, p2, offset in cat_specs:
        seed += 1
        tests = CATEGORICAL_TESTS
        categorical.append(categorical_case(
            name,
            spec(seed, n1, "levels", kind="str", k=k, power=p1, missing=miss),
            spec(seed + 50000, n2, "levels", kind="str", k=k, power=p2, missing=miss, loc=offset),
            tests=tests))
    seed += 1
    categorical.append(categorical_case("bool_shift", spec(seed, 300, "levels", kind="bool", k=2),
                                        spec(seed + 1, 300, "levels", kind="bool", k=2, power=2)))

    # kstwo.sf and smirnov directly, across scipy's algorithm regions.
    kolmogorov = []
    for n in [1, 2, 5, 30, 100, 140, 141, 500, 5000, 50000, 99999, 100001, 500000]:
        for x in [0.0005, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.95]:
            kolmogorov.append({"n": n, "x": x, "kstwo_sf": fnum(stats.kstwo.sf(x, n)),
                               "smirnov": fnum(special.smirnov(n, x))})

    datasets = []
    for name, n1, n2, shift in [("small", 300, 200, 0.3), ("large", 1500, 1200, 0.2),
                                ("boundary_1001", 1001, 800, 0.0), ("large_no_drift", 2000, 2000, 0.0)]:
        seed += 10
        miss = 0.002 if name == "boundary_1001" else 0.05
        columns = [
            ("f", spec(seed, n1, "normalish", missing=miss), spec(seed + 1, n2, "normalish", loc=shift)),
            ("skewed", spec(seed + 2, n1, "skew"), spec(seed + 3, n2, "skew", loc=shift / 3)),
            ("i4", spec(seed + 4, n1, "levels", kind="int", k=4), spec(seed + 5, n2, "levels", kind="int", k=4,
                                                                         power=2 if shift else 1)),
            ("i8", spec(seed + 6, n1, "levels", kind="int", k=8), spec(seed + 7, n2, "levels", kind="int", k=8)),
            ("i40", spec(seed + 8, n1, "levels", kind="int", k=40),
             spec(seed + 9, n2, "levels", kind="int", k=40, power=2 if shift else 1)),
            ("s", spec(seed + 10, n1, "levels", kind="str", k=5, missing=0.03),
             spec(seed + 11, n2, "levels", kind="str", k=5, power=2 if shift else 1)),
            ("b", spec(seed + 12, n1, "levels", kind="bool", k=2), spec(seed + 13, n2, "levels", kind="bool", k=2)),
        ]
        datasets.append(dataset_case(name, columns))

    json.dump({
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
                     "evidently": evidently.__version__},
        "numeric": numeric,
        "categorical": categorical,
        "kolmogorov": kolmogorov,
        "datasets": datasets,
    }, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
