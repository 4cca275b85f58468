"""The registered model takes rows with pandas' own types (issue 22, item 4).

`mlflow.pyfunc.load_model("models:/<name>@production").predict(df)` answers a frame exactly as
`pd.read_parquet` or `pd.read_csv` (with or without `parse_dates`) gives it, with `category` or
pandas' nullable dtypes, and a request as MLflow's scoring server parses it (JSON, Parquet):
labels and probabilities equal to the in-process Pipeline's on the rows training saw. Each model
is registered in a real MLflow store and loaded back by alias; nothing is mocked.
"""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlassets.ml.data import target
from mlassets.ml.features import build_features, input_frame
from mlassets.ml.training import make_estimator, spec_pipeline
from mlassets.spec import DEFAULT_SPEC, DatasetSpec, load_spec
from mlassets_tests.conftest import empty_mlflow_store

pytestmark = pytest.mark.integration

PROBABILITY = {"output": "probability"}
FRAUD_DATES = ["timestamp", "signup_date"]


def own_spec(folder: Path) -> DatasetSpec:
    """A spec unlike fraud's: a float column whose values are all whole (plain `read_csv` reads
    it as int64), a nullable integer, a boolean feature, a category given as numbers (with
    missing values: float in memory) and a boolean used as a category."""
    return DatasetSpec.model_validate(
        {
            "name": "own_types",
            "source": "rows.parquet",
            "label": {"column": "bought", "positive": 1},
            "id": "row_id",
            "columns": {
                "row_id": {"type": "integer", "nullable": False, "unique": True},
                "amount": {"type": "float", "nullable": False, "min": 0},
                "visits": {"type": "integer", "min": 0},
                "member": {"type": "boolean", "nullable": False},
                "plan": {"type": "category", "values": [1, 2, 3]},
                "promo": {"type": "boolean"},
                "bought": {"type": "integer", "nullable": False, "values": [0, 1]},
            },
            "features": {
                "numeric": ["amount", "visits", "member"],
                "categorical": ["plan", "promo"],
            },
            "path": folder / "spec.yaml",
        }
    )


def own_rows(n: int, seed: int) -> pd.DataFrame:
    """`n` rows of `own_spec`, typed as mlassets reads them (a missing integer makes a float)."""
    rng = np.random.default_rng(seed)
    amount = rng.integers(0, 500, n).astype("float64")
    visits = rng.poisson(4, n).astype("float64")
    visits[rng.random(n) < 0.1] = np.nan
    member = rng.random(n) < 0.4
    plan = rng.choice([1.0, 2.0, 3.0], n)
    plan[rng.random(n) < 0.1] = np.nan
    promo = pd.Series(rng.random(n) < 0.5, dtype=object)
    promo[rng.random(n) < 0.1] = None
    score = amount / 100 + np.nan_to_num(visits) / 2 + 2 * member + (plan == 3) + (promo == True)  # noqa: E712
    bought = (score + rng.normal(0, 1, n) > 5).astype("int64")
    return pd.DataFrame(
        {
            "row_id": np.arange(1, n + 1),
            "amount": amount,
            "visits": visits,
            "member": member,
            "plan": plan,
            "promo": promo,
            "bought": bought,
        }
    )


class Registered:
    """A Pipeline fitted on `train` (as the training job feeds it: `build_features`, then the
    spec's inputs), logged with `log_pipeline` and registered under the spec's name behind
    `production`; `served` is it loaded back through `mlflow.pyfunc`."""

    def __init__(self, root: Path, spec: DatasetSpec, train: pd.DataFrame, seed: int) -> None:
        import mlflow
        from mlflow import MlflowClient

        from mlassets.ml.registry import PRODUCTION, log_pipeline, mark_registered, register

        self.spec = spec
        featured = build_features(train, spec)
        X, y = input_frame(featured, spec), target(featured, spec)
        estimator = make_estimator("random_forest", {"n_estimators": 20, "max_depth": 6}, seed)
        self.model = spec_pipeline(spec, estimator).fit(X, y)
        uri = mlflow.get_tracking_uri()
        client = MlflowClient(uri, uri)
        experiment = client.create_experiment(spec.name, artifact_location=str(root / spec.name))
        with mlflow.start_run(experiment_id=experiment) as run:
            info = log_pipeline(self.model, X, spec)
        mv = register(
            client, spec.name, info.model_uri, run.info.run_id, {}, model_id=info.model_id
        )
        mark_registered(client, spec.name, mv.version)
        client.set_registered_model_alias(spec.name, PRODUCTION, mv.version)
        self.served = mlflow.pyfunc.load_model(f"models:/{spec.name}@{PRODUCTION}")

    def expected(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Labels and positive-class probabilities of the in-process Pipeline on `rows` as the
        training job feeds them."""
        X = input_frame(build_features(rows, self.spec), self.spec)
        return self.model.predict(X), self.model.predict_proba(X)[:, 1]

    def assert_answers(self, df: pd.DataFrame, rows: pd.DataFrame, exact: bool = True) -> None:
        labels, probability = self.expected(rows)
        got = np.asarray(self.served.predict(df)).ravel()
        np.testing.assert_array_equal(got, labels)
        p = np.asarray(self.served.predict(df, params=PROBABILITY), dtype=float)
        if exact:
            np.testing.assert_array_equal(p, probability)
        else:  # parsed from text: the same decimals, maybe not the same last bit
            np.testing.assert_allclose(p, probability, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real MLflow SQLite store of its own, the tracking and registry URI for this module."""
    import mlflow

    root = tmp_path_factory.mktemp("serving_types")
    uri = empty_mlflow_store(root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield root


@pytest.fixture(scope="module")
def fraud(store) -> Registered:
    from mlassets.synthetic import fraud_frame

    return Registered(store, load_spec(DEFAULT_SPEC), fraud_frame(3000, seed=7), seed=1)


@pytest.fixture(scope="module")
def fraud_rows() -> pd.DataFrame:
    """A landed fraud batch, id and label included, with missing values: a float, a category
    and an integer (which makes that column float64, as pandas reads it)."""
    from mlassets.synthetic import fraud_batch

    rows = fraud_batch(300, seed=23, drift="covariate").reset_index(drop=True)
    rows["total_purchases"] = rows["total_purchases"].astype("float64")
    rows.loc[[3, 40], "feature_2"] = np.nan
    rows.loc[[5, 41], "category"] = None
    rows.loc[[7, 42], "total_purchases"] = np.nan
    return rows


@pytest.fixture(scope="module")
def own(store, tmp_path_factory) -> Registered:
    spec = own_spec(tmp_path_factory.mktemp("own_spec"))
    return Registered(store, spec, own_rows(3000, seed=3), seed=2)


def files(rows: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """`rows` as a Parquet and a CSV file; the CSV writes whole numbers without a decimal point,
    as most tools do (pandas would write 12.0), so pandas reads such a float column as int64."""
    parquet, csv = folder / "batch.parquet", folder / "batch.csv"
    rows.to_parquet(parquet, index=False)
    rows.to_csv(csv, index=False, float_format="%.17g")
    return parquet, csv


def read_paths(parquet: Path, csv: Path, dates: list[str]) -> dict[str, tuple[pd.DataFrame, bool]]:
    """The frames a consumer gets from the batch's files, each with whether its numbers went
    through text (CSV: compared to the last bit's tolerance)."""
    return {
        "read_parquet": (pd.read_parquet(parquet), True),
        "read_parquet nullable dtypes": (
            pd.read_parquet(parquet, dtype_backend="numpy_nullable"),
            True,
        ),
        "read_csv parse_dates": (pd.read_csv(csv, parse_dates=dates), False),
        "read_csv": (pd.read_csv(csv), False),
        "read_csv nullable dtypes": (pd.read_csv(csv, dtype_backend="numpy_nullable"), False),
    }


def test_a_fraud_batch_is_answered_alike_whatever_pandas_read_it_as(fraud, fraud_rows, tmp_path):
    parquet, csv = files(fraud_rows, tmp_path)
    frames = read_paths(parquet, csv, FRAUD_DATES)
    typed = pd.read_parquet(parquet)
    frames["category dtype"] = (typed.astype({"category": "category"}), True)
    frames["Int64"] = (typed.astype({"total_purchases": "Int64"}), True)
    frames["dates as ISO text"] = (
        typed.assign(**{c: typed[c].dt.strftime("%Y-%m-%dT%H:%M:%S") for c in FRAUD_DATES}),
        True,
    )
    frames["microsecond datetimes"] = (
        typed.assign(**{c: typed[c].astype("datetime64[us]") for c in FRAUD_DATES}),
        True,
    )
    assert str(frames["read_csv"][0]["timestamp"].dtype) == "object"  # text, not dates
    assert str(frames["read_parquet"][0]["timestamp"].dtype).startswith("datetime64")
    labels, _ = fraud.expected(fraud_rows)
    assert 0 < labels.sum() < len(labels)  # both classes: a constant answer cannot pass
    for how, (df, exact) in frames.items():
        try:
            fraud.assert_answers(df, fraud_rows, exact)
        except AssertionError as e:
            raise AssertionError(f"{how}: {e}") from e


def test_own_types_are_answered_alike_whatever_pandas_read_them_as(own, tmp_path):
    rows = own_rows(400, seed=11)
    parquet, csv = files(rows, tmp_path)
    frames = read_paths(parquet, csv, [])
    plain = frames["read_csv"][0]
    # what makes these paths differ: a float column of whole numbers is read as int64, the
    # category of numbers as float64, the boolean with missing values as object
    assert str(plain["amount"].dtype) == "int64" and str(plain["plan"].dtype) == "float64"
    assert str(frames["read_csv nullable dtypes"][0]["visits"].dtype) == "Int64"
    typed = pd.read_parquet(parquet)
    frames["Int64 and a category of numbers"] = (
        typed.astype({"visits": "Int64", "plan": "Int64"}),
        True,
    )
    frames["category dtype"] = (typed.astype({"plan": "category", "promo": "category"}), True)
    frames["booleans as text"] = (
        typed.assign(member=typed["member"].map({True: "true", False: "false"})),
        True,
    )
    labels, _ = own.expected(rows)
    assert 0 < labels.sum() < len(labels)
    for how, (df, exact) in frames.items():
        try:
            own.assert_answers(df, rows, exact)
        except AssertionError as e:
            raise AssertionError(f"{how}: {e}") from e


def test_a_request_as_the_scoring_server_parses_it_is_answered_alike(fraud, own, fraud_rows):
    """MLflow's own parsers for the server's bodies, in process (the real server:
    test_clients.py): JSON `dataframe_split` and `dataframe_records`, CSV and Parquet."""
    from mlflow.pyfunc.scoring_server import (
        infer_and_parse_data,
        parse_csv_input,
        parse_parquet_input,
    )

    for registered, rows in ((fraud, fraud_rows), (own, own_rows(300, seed=12))):
        schema = registered.served.metadata.get_input_schema()
        for orient in ("split", "records"):
            body = json.loads(rows.to_json(orient=orient, date_format="iso", index=False))
            df = infer_and_parse_data({f"dataframe_{orient}": body}, schema)
            registered.assert_answers(df, rows, exact=False)
        csv = rows.to_csv(index=False, float_format="%.17g")
        registered.assert_answers(parse_csv_input(io.StringIO(csv), schema), rows, exact=False)
        buffer = io.BytesIO()
        rows.to_parquet(buffer, index=False)
        registered.assert_answers(parse_parquet_input(io.BytesIO(buffer.getvalue())), rows)


def test_the_signature_enforces_no_input_types_and_the_metadata_keeps_the_specs(fraud, own):
    """No input schema (MLflow's strict enforcement and its CSV parser would refuse pandas'
    own types): the params schema stays, and the spec's columns and types are written beside."""
    for registered in (fraud, own):
        spec = registered.spec
        meta = registered.served.metadata
        assert meta.get_input_schema() is None
        assert [p.name for p in meta.get_params_schema().params] == ["output"]
        types = meta.metadata["input_types"]
        assert sorted(types) == sorted(spec.model_inputs)  # MLmodel is YAML with sorted keys
        for name, declared in types.items():
            column = spec.columns[name]
            assert declared == {"type": column.type, "nullable": column.nullable}
    assert fraud.served.metadata.metadata["input_types"]["timestamp"]["type"] == "datetime"


@pytest.mark.parametrize(
    ("column", "value", "named"),
    [
        ("feature_1", "lots", "not numbers: ['lots']"),
        ("total_purchases", "12 items", "not numbers: ['12 items']"),
        ("timestamp", "yesterday", "not dates: ['yesterday']"),
        ("signup_date", 20250301, "not dates: [20250301]"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_column(
    fraud, fraud_rows, column, value, named
):
    from mlflow.exceptions import MlflowException

    df = fraud_rows.head(5).astype({column: object})
    df.loc[1, column] = value
    if column == "signup_date":  # a column of numbers: epoch seconds? days? refused
        df[column] = [value] * len(df)
    with pytest.raises(MlflowException, match="the rows do not fit the model") as raised:
        fraud.served.predict(df)
    assert f"column {column!r} holds values that are {named}" in raised.value.message


def test_a_boolean_that_is_not_one_and_a_missing_column_are_refused_by_name(own):
    from mlflow.exceptions import MlflowException

    rows = own_rows(5, seed=13)
    bad = rows.astype({"member": object})
    bad.loc[2, "member"] = "maybe"
    with pytest.raises(MlflowException, match=r"column 'member' holds values that are not bool"):
        own.served.predict(bad)
    with pytest.raises(MlflowException, match=r"lack the model's input column\(s\) \['visits'\]"):
        own.served.predict(rows.drop(columns="visits"))


def test_a_version_registered_with_the_strict_signature_of_before_scores_as_it_did(
    fraud, fraud_rows
):
    """Before, the signature declared types (datetimes as `string`, a nullable integer as
    `double`) that MLflow enforces strictly, and `SpecFeatures` had no `input_kinds_`. Such a
    version still loads and answers as before: `request_frame` converts a typed frame for it,
    and `registry.predictions_match` (the staging check) compares through it."""
    import copy

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    from mlassets.ml import serving
    from mlassets.ml.registry import predictions_match
    from mlassets.ml.training import SKOPS_TRUSTED_TYPES

    spec, model = fraud.spec, copy.deepcopy(fraud.model)
    del model.steps[0][1].input_kinds_  # as a step saved before holds it
    strict = {"timestamp": "string", "signup_date": "string", "category": "string"}
    inputs = Schema([ColSpec(strict.get(c, "double"), c) for c in spec.model_inputs])
    X = input_frame(build_features(fraud_rows, spec), spec)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name(spec.name).experiment_id):
        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=serving,
            flavor_name="sklearn",
            sk_model=model,
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            signature=ModelSignature(inputs=inputs, params=serving.params_schema()),
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
    older = mlflow.pyfunc.load_model(info.model_uri)
    schema = older.metadata.get_input_schema()
    labels, _ = fraud.expected(fraud_rows)
    got = older.predict(serving.request_frame(X, schema))
    np.testing.assert_array_equal(np.asarray(got).ravel(), labels)
    assert predictions_match(info.model_uri, X, labels)["mismatched"] == 0
    with pytest.raises(MlflowException, match="Can not safely convert"):
        older.predict(X)  # MLflow's own enforcement, as before
