"""Small shared inputs for the unit tests of the functional core (`mlassets.ml`)."""

import pandas as pd
import pytest

import mlassets.settings  # noqa: F401  (telemetry off before MLflow or GE is imported)
from mlassets.spec import DEFAULT_SPEC, DatasetSpec, load_spec
from mlassets.synthetic import fraud_frame

ROWS = 2000


@pytest.fixture(scope="session")
def spec() -> DatasetSpec:
    """The bundled fraud spec (frozen, so safe to share)."""
    return load_spec(DEFAULT_SPEC)


@pytest.fixture(scope="session")
def _raw(spec) -> pd.DataFrame:
    return fraud_frame(ROWS, seed=7)


@pytest.fixture
def raw(_raw) -> pd.DataFrame:
    """2,000 seeded synthetic rows in the fraud schema; a fresh copy per test."""
    return _raw.copy()


@pytest.fixture(scope="session")
def _featured(spec, _raw) -> pd.DataFrame:
    from mlassets.ml.features import build_features

    return build_features(_raw, spec)


@pytest.fixture
def featured(_featured) -> pd.DataFrame:
    """`raw` plus the derived features; a fresh copy per test."""
    return _featured.copy()
