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
    `production`; `served` is it loaded back through `mlflow.pyfunc`. `calibrated`: with a
    calibration fitted on the training rows; `negative`: `log_pipeline`'s negative label."""

    def __init__(
        self,
        root: Path,
        spec: DatasetSpec,
        train: pd.DataFrame,
        seed: int,
        calibrated: bool = False,
        negative: object = None,
    ) -> None:
        import mlflow
        from mlflow import MlflowClient

        from mlassets.ml.estimation import fit_calibration
        from mlassets.ml.registry import PRODUCTION, log_pipeline, mark_registered, register

        self.spec = spec
        featured = build_features(train, spec)
        X, y = input_frame(featured, spec), target(featured, spec)
        estimator = make_estimator("random_forest", {"n_estimators": 20, "max_depth": 6}, seed)
        self.model = spec_pipeline(spec, estimator).fit(X, y)
        calibration = fit_calibration(self.model, X, y, "temperature") if calibrated else None
        uri = mlflow.get_tracking_uri()
        client = MlflowClient(uri, uri)
        experiment = client.create_experiment(spec.name, artifact_location=str(root / spec.name))
        with mlflow.start_run(experiment_id=experiment) as run:
            info = log_pipeline(
                self.model,
                X,
                spec,
                calibration.to_dict() if calibration else None,
                negative=negative,
            )
        mv = register(
            client, spec.name, info.model_uri, run.info.run_id, {}, model_id=info.model_id
        )
        mark_registered(client, spec.name, mv.version)
        client.set_registered_model_alias(spec.name, PRODUCTION, mv.version)
        self.uri = f"models:/{spec.name}/{mv.version}"
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

    spec = load_spec(DEFAULT_SPEC)
    return Registered(store, spec, fraud_frame(3000, seed=7), seed=1, calibrated=True)


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


# --- the spec's rules travel with the version (issue 27, item 5) -----------------------------

OUTPUTS_REFUSING = ("label", "probability", "both", "calibrated_probability")
RULE_CASES = [  # (model, column, value, what the message says of the column's values)
    ("fraud", "feature_1", -1e9, "below the spec's min 0: [-1000000000.0] (1 row)"),
    ("fraud", "feature_1", 100.5, "above the spec's max 100: [100.5] (1 row)"),
    (
        "fraud",
        "category",
        "toys",
        "not among the spec's values ['electronics', 'grocery', 'travel', 'fashion']: "
        "['toys'] (1 row)",
    ),
    ("fraud", "timestamp", None, "that are missing (nullable: false): [None] (1 row)"),
    ("fraud", "feature_2", np.inf, "that are infinite (allow_infinite: false): [inf] (1 row)"),
    ("fraud", "feature_2", "lots", "that are not numbers: ['lots'] (1 row)"),
    ("fraud", "total_purchases", 2.5, "that are not whole numbers (type: integer): [2.5] (1 row)"),
    ("own", "plan", 4, "not among the spec's values [1, 2, 3]: [4] (1 row)"),
    ("own", "amount", None, "that are missing (nullable: false): [None] (1 row)"),
    ("own", "member", "maybe", "that are not booleans (true/false, 1/0): ['maybe'] (1 row)"),
]


def rows_of(model: str, fraud_rows: pd.DataFrame) -> pd.DataFrame:
    return (fraud_rows if model == "fraud" else own_rows(30, seed=17)).head(12).copy()


def with_value(rows: pd.DataFrame, column: str, value: object, at: int = 2) -> pd.DataFrame:
    out = rows.astype({column: object})
    out.at[at, column] = value
    return out


@pytest.mark.parametrize(("model", "column", "value", "named"), RULE_CASES)
def test_a_row_the_spec_forbids_is_refused_naming_the_column_and_the_value(
    request, fraud_rows, model, column, value, named
):
    """Every output but `checked` refuses the batch, with MLflow's 400 code."""
    from mlflow.exceptions import MlflowException

    registered = request.getfixturevalue(model)
    rows = rows_of(model, fraud_rows)
    registered.served.predict(rows)  # the batch itself fits
    bad = with_value(rows, column, value)
    for output in OUTPUTS_REFUSING if model == "fraud" else OUTPUTS_REFUSING[:3]:
        with pytest.raises(MlflowException, match="the rows do not fit the model") as raised:
            registered.served.predict(bad, params={"output": output})
        assert f"column {column!r} holds values {named}" in raised.value.message, output
        assert raised.value.get_http_status_code() == 400
        assert '"output": "checked"' in raised.value.message  # what to do instead


def test_a_refusal_names_every_rule_broken_and_stays_bounded(fraud, fraud_rows):
    from mlflow.exceptions import MlflowException

    from mlassets.ml.bounded import MESSAGE_BYTES

    bad = with_value(with_value(fraud_rows.head(200), "feature_1", -1e9, 1), "category", "toys", 3)
    bad = bad.astype({"category": object})
    bad.loc[10:199, "category"] = [f"{'x' * 5000}{i}" for i in range(190)]  # long, many
    with pytest.raises(MlflowException) as raised:
        fraud.served.predict(bad)
    message = raised.value.message
    assert "column 'feature_1' holds values below the spec's min 0: [-1000000000.0]" in message
    assert "column 'category' holds values not among the spec's values" in message
    assert "(191 rows)" in message  # 'toys' and the 190 long ones, 5 of them shown, clipped
    assert len(message.encode()) <= MESSAGE_BYTES


def test_the_checked_output_flags_exactly_the_bad_rows_and_scores_the_good_ones_alike(
    fraud, fraud_rows
):
    """Each bad row lists what is wrong with it; a row that can be read is scored as given, a
    row that cannot (text in a number column, an infinity) gets nulls; every good row gets
    exactly the default output's answer. The answer is MLflow's JSON (null, not NaN)."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    rows = fraud_rows.head(120).copy()
    breaks = {
        1: ("feature_1", -1e9, ["column 'feature_1': -1000000000.0 is below the min 0"]),
        4: ("category", "toys", ["column 'category': 'toys' is not among the spec's values"]),
        9: ("timestamp", None, ["column 'timestamp': missing (nullable: false)"]),
        11: ("feature_2", np.inf, ["column 'feature_2': inf is infinite"]),
        13: ("feature_1", "lots", ["column 'feature_1': 'lots' is not a number"]),
        15: ("total_purchases", 2.5, ["column 'total_purchases': 2.5 is not a whole number"]),
    }
    for at, (column, value, _) in breaks.items():
        rows = with_value(rows, column, value, at)
    unscored = {11, 13}
    answer = fraud.served.predict(rows, params={"output": "checked"})
    assert list(answer.columns) == ["prediction", "probability", "problems"]
    assert len(answer) == len(rows)
    for i, problems in enumerate(answer["problems"]):
        assert problems == (breaks[i][2] if i in breaks else []), i
    nulls = {i for i, p in enumerate(answer["prediction"]) if p is None}
    assert nulls == unscored
    assert {i for i, p in enumerate(answer["probability"]) if p is None} == unscored

    good = [i for i in range(len(rows)) if i not in breaks]
    clean = fraud_rows.head(120).iloc[good]
    labels = np.asarray(fraud.served.predict(clean))
    probability = np.asarray(fraud.served.predict(clean, params=PROBABILITY))
    assert 0 < labels.sum() < len(labels)
    np.testing.assert_array_equal(answer["prediction"].iloc[good].to_numpy(dtype=int), labels)
    np.testing.assert_array_equal(answer["probability"].iloc[good].to_numpy(float), probability)
    # a row the spec forbids but the model can read: scored as given, as the Pipeline would
    scored = [1, 4, 9, 15]
    X = input_frame(rows.iloc[scored].astype({"feature_1": float}), fraud.spec)
    np.testing.assert_array_equal(
        answer["probability"].iloc[scored].to_numpy(float), fraud.model.predict_proba(X)[:, 1]
    )

    out = io.StringIO()
    predictions_to_json(answer, out)
    body = json.loads(out.getvalue())["predictions"]
    assert body[13] == {"prediction": None, "probability": None, "problems": breaks[13][2]}
    assert body[0]["problems"] == [] and body[0]["prediction"] in (0, 1)


def test_an_empty_batch_gets_an_empty_answer_for_every_output(fraud, own, fraud_rows):
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, predictions_to_json

    from mlassets.ml.serving import OUTPUTS

    columns = list(fraud_rows.columns)
    bodies = [
        fraud_rows.head(0),
        infer_and_parse_data({"dataframe_split": {"columns": columns, "data": []}}),
        infer_and_parse_data({"dataframe_records": []}),  # no columns either
    ]
    for df in bodies:
        for output in OUTPUTS:
            answer = fraud.served.predict(df, params={"output": output})
            out = io.StringIO()
            predictions_to_json(answer, out)
            assert json.loads(out.getvalue()) == {"predictions": []}, output
    assert len(own.served.predict(own_rows(5, seed=1).head(0))) == 0


def text_label_spec(folder: Path, name: str, listed: bool) -> DatasetSpec:
    """`own_spec` with the label as text: `churned`, "yes" or "no" (`listed`: in `values`)."""
    raw = own_spec(folder).model_dump(exclude={"path"})
    raw["columns"].pop("bought")
    churned = {"type": "string", "nullable": False}
    raw["columns"]["churned"] = {**churned, "values": ["yes", "no"]} if listed else churned
    raw.update(name=name, label={"column": "churned", "positive": "yes"})
    return DatasetSpec.model_validate({**raw, "path": folder / "spec.yaml"})


def text_label_rows(n: int, seed: int) -> pd.DataFrame:
    rows = own_rows(n, seed)
    return rows.assign(churned=rows.pop("bought").map({1: "yes", 0: "no"}))


def test_a_text_label_spec_is_answered_in_its_own_label_values(store, tmp_path):
    """`label.positive` and the other value of the label column's `values`, for `label`,
    `both` and `checked`; the staging check (`predictions_match`) still compares the
    candidate's 0/1 with them right."""
    from mlassets.ml.registry import predictions_match

    spec = text_label_spec(tmp_path, "own_text_label", listed=True)
    registered = Registered(store, spec, text_label_rows(3000, seed=3), seed=2)
    rows = text_label_rows(200, seed=19)
    X = input_frame(rows, spec)
    zero_one = registered.model.predict(X)
    assert 0 < zero_one.sum() < len(zero_one)
    words = np.where(zero_one == 1, "yes", "no")
    served = registered.served
    np.testing.assert_array_equal(np.asarray(served.predict(rows)).astype(str), words)
    both = served.predict(rows, params={"output": "both"})
    np.testing.assert_array_equal(both["prediction"].to_numpy().astype(str), words)
    checked = served.predict(rows, params={"output": "checked"})
    assert checked["prediction"].tolist() == words.tolist()
    assert served.metadata.get_output_schema().inputs[0].type.name == "string"
    assert predictions_match(registered.uri, X, zero_one)["mismatched"] == 0
    assert predictions_match(registered.uri, X, 1 - zero_one)["mismatched"] == len(rows)


def test_a_label_without_listed_values_takes_the_negative_seen_in_training(store, tmp_path):
    """No `values` on the label column: `log_pipeline(negative=...)` names the negative (the
    training rows' other label, `requests.negative_label`); without it the answer stays 0/1."""
    from mlassets.ml.requests import negative_label

    spec = text_label_spec(tmp_path, "own_text_label_unlisted", listed=False)
    train = text_label_rows(3000, seed=3)
    negative = negative_label(spec, train["churned"])
    assert negative == "no"
    assert negative_label(spec) is None
    assert negative_label(load_spec(DEFAULT_SPEC)) == 0  # from the fraud spec's values [0, 1]
    registered = Registered(store, spec, train, seed=2, negative=negative)
    rows = text_label_rows(100, seed=19)
    zero_one = registered.model.predict(input_frame(rows, spec))
    words = np.where(zero_one == 1, "yes", "no").tolist()
    assert np.asarray(registered.served.predict(rows)).tolist() == words


def test_the_fraud_spec_still_answers_1_and_0(fraud, fraud_rows):
    labels = fraud.served.predict(fraud_rows)
    assert np.asarray(labels).dtype == np.int64
    assert set(np.unique(labels)) == {0, 1}
    assert fraud.served.metadata.get_output_schema().inputs[0].type.name == "long"


def test_a_version_without_spec_rules_answers_as_it_did(fraud, fraud_rows):
    """A version registered before versions carried `serving.json`: the rows the spec forbids
    are answered as before (0/1, as the Pipeline answers them), `checked` is refused saying
    why, and an empty batch gets an empty answer."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from mlassets.ml import serving
    from mlassets.ml.training import SKOPS_TRUSTED_TYPES

    spec = fraud.spec
    X = input_frame(fraud_rows, spec)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name(spec.name).experiment_id):
        info = Model.log(  # log_pipeline as it was: no rules
            artifact_path=None,
            name="model",
            flavor=serving,
            flavor_name="sklearn",
            sk_model=fraud.model,
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            signature=serving.signature(spec, X, fraud.model.predict(X.head(5))),
            metadata=serving.model_metadata(spec),
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
    older = mlflow.pyfunc.load_model(info.model_uri)
    bad = with_value(with_value(fraud_rows.head(20), "feature_1", -1e9, 1), "category", "toys", 3)
    bad = with_value(bad, "timestamp", None, 5).astype({"feature_1": float})
    expected = fraud.model.predict(input_frame(bad, spec))
    np.testing.assert_array_equal(np.asarray(older.predict(bad)), expected)
    with pytest.raises(MlflowException, match="carries no spec rules"):
        older.predict(bad, params={"output": "checked"})
    assert len(older.predict(bad.head(0), params={"output": "both"})) == 0
