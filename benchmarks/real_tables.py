"""A real public table for the benchmarks, from a package already installed (nothing downloaded).

NannyML (the `bench` extra) ships the US Census ACS employment table for Massachusetts
(folktables' ACSEmployment task: 277,677 people, 2015 to 2018, 16 features, `employed` about
50 %). It is read straight from the package's data folder with pandas; nannyml itself is never
imported here. Age (`AGEP`, 0-94) makes a real shift beyond the training range: a model trained
on people up to 50 meets people over 50, where employment follows another rule (retirement)
that no training row shows.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pandas as pd

from mlassets.spec import DatasetSpec

CENSUS_CATEGORICAL = [
    "SCHL",
    "MAR",
    "RELP",
    "DIS",
    "ESP",
    "CIT",
    "MIG",
    "MIL",
    "ANC",
    "NATIVITY",
    "DEAR",
    "DEYE",
    "DREM",
    "SEX",
    "RAC1P",
]
TRAINING_AGE = 50  # the training rows' ages are 0..50; older people lie beyond that range


def census_folder() -> Path | None:
    """NannyML's data folder, found without importing nannyml (None when not installed)."""
    spec = find_spec("nannyml")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if (folder / "employment_MA_reference.pq").is_file() else None


def census() -> pd.DataFrame:
    """Every person of the table with their label and survey year; categories as text."""
    folder = census_folder()
    if folder is None:
        raise FileNotFoundError("the census table comes with nannyml: `make bench` installs it")
    reference = pd.read_parquet(folder / "employment_MA_reference.pq")
    analysis = pd.read_parquet(folder / "employment_MA_analysis.pq").merge(
        pd.read_parquet(folder / "employment_MA_analysis_target.pq"), on="id"
    )
    df = pd.concat([reference, analysis], ignore_index=True)
    for col in CENSUS_CATEGORICAL:
        df[col] = df[col].astype(str)
    return df[["id", "AGEP", *CENSUS_CATEGORICAL, "employed", "year"]]


def census_spec() -> DatasetSpec:
    """The table's spec, built in code as a user would write it."""
    columns = {"id": {"type": "integer", "nullable": False, "unique": True}}
    columns["AGEP"] = {"type": "float", "min": 0}
    columns |= {c: {"type": "category"} for c in CENSUS_CATEGORICAL}
    columns["employed"] = {"type": "integer", "nullable": False, "values": [0, 1]}
    columns["year"] = {"type": "integer"}
    return DatasetSpec.model_validate(
        {
            "name": "census_employment",
            "source": "employment.parquet",
            "label": {"column": "employed", "positive": 1},
            "id": "id",
            "columns": columns,
            "features": {"numeric": ["AGEP"], "categorical": CENSUS_CATEGORICAL},
        }
    )
