"""The served model: what `mlflow.pyfunc.load_model` and `mlflow models serve` run for a version.

A registered version's MLmodel names this module as its pyfunc loader. MLflow's own sklearn
loader cannot serve what we need: its `predict` drops `params`, so it answers labels only, and it
loads through MLflow's deserialization switch, which mlassets keeps off. This loader checks the
files first (`registry.verify_flavor`: sklearn flavor, skops format, types within our trusted
list), loads the skops file with mlassets' own trusted list, and answers:

- `params={"output": "label"}` (the default): the label at the model's tuned threshold, what
  the in-process Pipeline's `predict` gives, as the spec's own label values (`label.positive`
  and the other one; 1/0 for the fraud spec);
- `params={"output": "probability"}`: the positive-class probability;
- `params={"output": "both"}`: a table with both, columns `prediction` and `probability`;
- `params={"output": "calibrated_probability"}`: P(positive) calibrated on the validation set
  (`estimation.Calibration`, in the model's folder as `calibration.json`): the probability to
  act on as a chance, and the one performance estimates before labels are made from;
- `params={"output": "checked"}`: one record per row, `prediction`, `probability` and
  `problems` (what in the row breaks the spec; empty when nothing does), a row that cannot be
  scored (a value that cannot be read) with a null prediction and probability.

Rows are checked against the spec's rules for its input columns (types, nullability, min/max,
allowed values, infinities: `requests.ServingRules`, in the model's folder as `serving.json`).
Every output but `checked` refuses a batch holding a row that breaks them, naming the column and
a few values: a model answers confidently whatever it is given (an unknown category is all zeros
to the encoder), so an answer for such a row would look trustworthy and is not. An empty batch
gets an empty answer. Versions registered before the rules existed have no `serving.json`: they
check nothing, answer 0/1 and have no `checked` output, as before.

Inputs: the spec's raw columns by name, as pandas, JSON, CSV or Parquet give them (no input
schema in the signature, see INPUT_TYPES_KEY): the model's first step, `features.SpecFeatures`,
coerces each to the kind training saw, so a frame as pandas reads a Parquet or CSV file and a
JSON, CSV or Parquet request are answered alike.

Loading needs `mlassets` importable (the model's first step, `features.SpecFeatures`, is ours):
serve from the project's environment (`make serve`, `--env-manager local`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LOADER_MODULE = "mlassets.ml.serving"
OUTPUT_PARAM = "output"
OUTPUTS = ("label", "probability", "both", "calibrated_probability", "checked")
CALIBRATION_FILE = "calibration.json"
RULES_FILE = "serving.json"
DEFAULT_OUTPUT = "label"


# The signature declares no input schema, on purpose. MLflow 3.17 enforces declared types
# strictly (no datetime64 for a `string` column, no int64 for a `double` one: "Can not safely
# convert int64 to float64", no missing value in a `long`), so a frame as `pd.read_parquet` or
# `pd.read_csv` gives it was refused; and its server parses a CSV body with
# `pd.read_csv(dtype=<the declared types>)`, which refuses datetime types and cannot be built for
# `AnyType` columns at all. With no input schema MLflow passes every body and frame through as
# pandas made it, and the model's first step (`features.SpecFeatures`) coerces each column to
# the kind training saw and refuses a missing column by name: one piece of code for every caller.
# The params schema (`output`) stays, and the spec's input columns and types are written in the
# MLmodel's `metadata` (`input_types`, see `model_metadata`).
INPUT_TYPES_KEY = "input_types"


def model_metadata(spec) -> dict[str, Any]:
    """What the MLmodel's `metadata` says of the inputs: each column's type in the spec, and
    whether it may be missing (`model.metadata.metadata` for a `pyfunc` model)."""
    return {
        INPUT_TYPES_KEY: {
            c: {"type": spec.columns[c].type, "nullable": spec.columns[c].nullable}
            for c in spec.model_inputs
        }
    }


def request_frame(df: pd.DataFrame, schema) -> pd.DataFrame:
    """`df`'s signature columns in the form `schema` takes, for a version registered with the
    strictly typed input schema of before (`string` for datetimes, `double` for integers, which
    MLflow enforces): datetimes become ISO text and integers floats. Today's versions declare no
    input schema and take `df` as it is."""
    out = {}
    for col in schema.inputs:
        values = df[col.name]
        kind = str(col.type)
        if kind.endswith("string") and pd.api.types.is_datetime64_any_dtype(values):
            values = values.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").astype(object)
            values = values.where(values.notna(), None)
        elif kind.endswith("double") and pd.api.types.is_integer_dtype(values):
            values = values.astype("float64")
        out[col.name] = values
    return pd.DataFrame(out, index=df.index, copy=False)


def signature(spec, example: pd.DataFrame, predictions: np.ndarray):
    """No input schema with a spec (the model coerces what it is given, see INPUT_TYPES_KEY;
    inferred from `example` without one), outputs the labels (as `predictions` holds them: the
    spec's label values), params the `output` switch."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    kinds = frozenset(type(v) for v in np.asarray(predictions).ravel().tolist())
    types = {frozenset([int]): "long", frozenset([str]): "string", frozenset([bool]): "boolean"}
    dtype = types.get(kinds, "double")
    return ModelSignature(
        inputs=None if spec else infer_signature(example).inputs,
        outputs=Schema([ColSpec(dtype)]),
        params=params_schema(),
    )


def save_model(
    path: str,
    mlflow_model,
    sk_model,
    calibration: dict | None = None,
    rules: dict | None = None,
    **kwargs: Any,
) -> None:
    """MLflow's flavor hook (`Model.log(flavor=this module)`): the sklearn flavor in skops, with
    this module as the pyfunc loader, and beside it as JSON the calibration and the spec's rules
    (`requests.ServingRules.to_dict`) when there are: the served model has no spec to read."""
    import json

    import mlflow.sklearn
    from mlflow import pyfunc

    mlflow.sklearn.save_model(sk_model, path, mlflow_model=mlflow_model, **kwargs)
    if calibration is not None:
        (Path(path) / CALIBRATION_FILE).write_text(json.dumps(calibration))
    if rules is not None:
        (Path(path) / RULES_FILE).write_text(json.dumps(rules, default=str))
    mlflow_model.flavors[pyfunc.FLAVOR_NAME][pyfunc.MAIN] = LOADER_MODULE
    mlflow_model.save(str(Path(path) / "MLmodel"))


def params_schema():
    """The `params` a served model accepts: `output`, one of OUTPUTS, default "label"."""
    from mlflow.types import ParamSchema, ParamSpec

    return ParamSchema([ParamSpec(OUTPUT_PARAM, "string", DEFAULT_OUTPUT)])


class ServedModel:
    """A verified, loaded mlassets model behind MLflow's pyfunc interface."""

    def __init__(self, model: Any, calibration: Any = None, rules: Any = None) -> None:
        from mlassets.ml.features import spec_features

        self.model = model
        self.calibration = calibration  # estimation.Calibration, or None (older versions)
        self.rules = rules  # requests.ServingRules, or None (older versions)
        step = spec_features(model)
        self.coercions = step.coercions() if step is not None else None

    def get_raw_model(self) -> Any:
        """The fitted sklearn model (MLflow's `PyFuncModel.get_raw_model` returns this)."""
        return self.model

    def predict(self, data: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """The `output` params asks for (see the module's docstring). Rows are judged against
        the spec's rules before any answer: a batch that breaks them is refused (a 400 naming
        the column and values) or, for `checked`, scored row by row and flagged."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        output = (params or {}).get(OUTPUT_PARAM, DEFAULT_OUTPUT)
        if output not in OUTPUTS:
            raise MlflowException(
                f"params.{OUTPUT_PARAM} must be one of {list(OUTPUTS)}, not {str(output)[:80]!r}",
                INVALID_PARAMETER_VALUE,
            )
        if output == "calibrated_probability" and self.calibration is None:
            raise MlflowException(
                "this model version carries no calibration (registered before mlassets "
                "calibrated its probabilities): ask for output 'probability'",
                INVALID_PARAMETER_VALUE,
            )
        if output == "checked" and self.rules is None:
            raise MlflowException(
                "this model version carries no spec rules (registered before mlassets checked "
                "rows against the spec): ask for output 'label', 'probability' or 'both'",
                INVALID_PARAMETER_VALUE,
            )
        if isinstance(data, pd.DataFrame) and not len(data):
            return self._empty(output)
        try:
            if self.rules is not None and isinstance(data, pd.DataFrame):
                from mlassets.ml.requests import check_rows, refusal

                check = check_rows(data, self.rules, self.coercions)
                if output == "checked":
                    return self._checked(check)
                if not check.fits:
                    raise MlflowException(refusal(check), INVALID_PARAMETER_VALUE)
                data = check.frame
            return self._answer(data, output)
        except (ValueError, TypeError) as e:  # a value the model cannot coerce: a bad date
            from mlassets.ml.bounded import clip

            raise MlflowException(
                f"the rows do not fit the model: {clip(str(e))}", INVALID_PARAMETER_VALUE
            ) from e

    def _labels(self, predictions: np.ndarray) -> np.ndarray:
        """The model's 0/1 labels as the spec's label values (as they are for older versions)."""
        return predictions if self.rules is None else self.rules.labels(predictions)

    def _answer(self, data: pd.DataFrame, output: str) -> Any:
        """`output` for rows that are to be scored (checked already, when there are rules)."""
        from mlassets.ml.evaluation import positive_scores

        if output == "label":
            return self._labels(self.model.predict(data))
        if output == "calibrated_probability":
            from mlassets.ml.estimation import probability as calibrated

            return np.asarray(calibrated(self.model, self.calibration, data), dtype=float)
        probability = np.asarray(positive_scores(self.model, data), dtype=float)
        if output == "probability":
            return probability
        return pd.DataFrame(
            {"prediction": self._labels(self.model.predict(data)), "probability": probability}
        )

    def _checked(self, check) -> pd.DataFrame:
        """One record per row: the rows that can be scored are, exactly as the other outputs
        score them; the others get a null prediction and probability."""
        n = len(check.problems)
        prediction = np.full(n, None, dtype=object)
        probability = np.full(n, None, dtype=object)
        scored = ~check.unscorable
        if scored.any():
            both = self._answer(check.frame[scored], "both")
            prediction[scored] = both["prediction"].to_numpy(dtype=object)
            probability[scored] = both["probability"].to_numpy(dtype=object)
        index = check.frame.index
        prediction = [_native(v) for v in prediction]
        probability = [None if v is None else float(v) for v in probability]
        # object columns: pandas would make a null prediction NaN, which JSON lacks
        return pd.DataFrame(
            {
                "prediction": pd.Series(prediction, index=index, dtype=object),
                "probability": pd.Series(probability, index=index, dtype=object),
                "problems": pd.Series(check.problems, index=index, dtype=object),
            }
        )

    def _empty(self, output: str) -> Any:
        """The answer to a batch of no rows: no answers, in the output's shape."""
        if output in ("probability", "calibrated_probability"):
            return np.array([], dtype=float)
        labels = self._labels(np.array([], dtype=np.int64))
        if output == "label":
            return labels
        columns = ["prediction", "probability"] + (["problems"] if output == "checked" else [])
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def _native(value: Any) -> Any:
    """A label as Python's own value (JSON writes it as it is): numpy scalars unwrapped."""
    return value.item() if isinstance(value, np.generic) else value


def _load_pyfunc(path: str) -> ServedModel:
    """MLflow's pyfunc entry point: `path` is the model's folder (or a file in it)."""
    import skops.io

    from mlassets.ml.registry import verify_flavor
    from mlassets.ml.training import SKOPS_TRUSTED_TYPES

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    file = verify_flavor(folder, f"model at {folder}")
    model = skops.io.load(file, trusted=SKOPS_TRUSTED_TYPES)
    return ServedModel(model, load_calibration(folder), load_rules(folder))


def load_rules(folder: Path):
    """The `serving.json` of a model's folder as a `requests.ServingRules`, or None (a version
    registered before versions carried them)."""
    import json

    from mlassets.ml.registry import RegistryError
    from mlassets.ml.requests import ServingRules

    file = Path(folder) / RULES_FILE
    if not file.is_file():
        return None
    try:
        return ServingRules.from_dict(json.loads(file.read_text()))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        from mlassets.ml.bounded import clip

        raise RegistryError(f"{file} is not spec rules mlassets wrote: {clip(str(e), 500)}") from e


def load_calibration(folder: Path):
    """The `calibration.json` of a model's folder as an `estimation.Calibration`, or None."""
    import json

    from mlassets.ml.estimation import Calibration
    from mlassets.ml.registry import RegistryError

    file = Path(folder) / CALIBRATION_FILE
    if not file.is_file():
        return None
    try:
        return Calibration.from_dict(json.loads(file.read_text()))
    except (ValueError, TypeError, KeyError) as e:
        raise RegistryError(f"{file} is not a calibration mlassets wrote: {e}") from e
