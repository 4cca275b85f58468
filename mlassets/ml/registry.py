"""The model registry: register atomically, verify, promote by alias, roll back.

Aliases (`staging`, `production`, `previous`) replace MLflow's deprecated stages. An alias moves
only after the version it will point at has loaded from the registry and predicted exactly like
the in-memory model.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.training import SKOPS_TRUSTED_TYPES

STAGING, PRODUCTION, PREVIOUS = "staging", "production", "previous"


class RegistryError(RuntimeError):
    """A registry operation that was refused or undone; the registry is as it was."""


def log_pipeline(model, X_example: pd.DataFrame, name: str = "model"):
    """Log a fitted Pipeline to the active MLflow run in skops format, with signature and example.

    Untrusted types beyond `SKOPS_TRUSTED_TYPES` make MLflow refuse the model; we never fall back
    to pickle.
    """
    import mlflow
    from mlflow.models import infer_signature

    example = X_example.head(5)
    signature = infer_signature(example, model.predict(example))
    return mlflow.sklearn.log_model(
        model,
        name=name,
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=signature,
        input_example=example,
        # the flavor's own pins (installed sklearn, skops, ...): skips MLflow's slow
        # subprocess that re-imports the model to infer requirements
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )


def register(
    client,
    name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    description: str = "",
    timeout_s: float = 60.0,
):
    """Create a model version with its tags in one call and wait until it is READY.

    If the version does not become READY it is deleted, so a failed registration leaves no trace.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Managed by mlassets: {name}")
    mv = client.create_model_version(
        name, model_uri, run_id=run_id, tags=tags, description=description
    )
    deadline = time.monotonic() + timeout_s
    while mv.status != "READY":
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            client.delete_model_version(name, mv.version)
            raise RegistryError(f"model {name} version {mv.version} did not register: {mv.status}")
        time.sleep(0.2)
        mv = client.get_model_version(name, mv.version)
    return mv


def predictions_match(model_uri: str, X: pd.DataFrame, expected: np.ndarray) -> dict[str, Any]:
    """Load `model_uri` through pyfunc and compare its predictions on X with `expected`."""
    import mlflow

    loaded = mlflow.pyfunc.load_model(model_uri)
    got = np.asarray(loaded.predict(X)).ravel()
    expected = np.asarray(expected).ravel()
    mismatched = int(np.sum(got != expected)) if got.shape == expected.shape else len(expected)
    return {"model_uri": model_uri, "rows": len(expected), "mismatched": mismatched}


def alias_version(client, name: str, alias: str) -> str | None:
    """The version behind `alias`, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias_verified(client, name: str, version: str, alias: str, X, expected) -> dict:
    """Point `alias` at `version` only if that version loads and predicts exactly `expected`."""
    check = predictions_match(f"models:/{name}/{version}", X, expected)
    if check["mismatched"]:
        raise RegistryError(
            f"{name} version {version} mispredicts {check['mismatched']} of {check['rows']} rows "
            f"after loading from the registry; alias {alias!r} not moved"
        )
    client.set_registered_model_alias(name, alias, version)
    return check


def promote(client, name: str, version: str) -> dict[str, str | None]:
    """Make `version` production and keep the version it replaces as `previous` (for rollback)."""
    current = alias_version(client, name, PRODUCTION)
    if current is not None and current != str(version):
        client.set_registered_model_alias(name, PREVIOUS, current)
    try:
        client.set_registered_model_alias(name, PRODUCTION, version)
    except Exception:
        if current is not None and current != str(version):
            client.set_registered_model_alias(name, PRODUCTION, current)
        raise
    return {"production": str(version), "previous": current if current != str(version) else None}


def rollback(client, name: str) -> dict[str, str]:
    """Point `production` back at `previous`; the rolled-back version becomes `previous`."""
    current = alias_version(client, name, PRODUCTION)
    previous = alias_version(client, name, PREVIOUS)
    if previous is None:
        raise RegistryError(f"model {name} has no 'previous' version to roll back to")
    client.set_registered_model_alias(name, PRODUCTION, previous)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
    return {"production": previous, "previous": current}


REFERENCE_DIR = "reference"


def log_reference(sample: pd.DataFrame, baseline: dict[str, Any]) -> None:
    """Store the training reference with the active MLflow run (hence with its model version).

    `sample` holds the training features (and label) that drift is measured against; `baseline`
    the test metrics, fingerprints and the landed batches the model was trained on. A fresh process
    (the daemon's sensor) needs nothing else to decide on drift.
    """
    import json
    import tempfile
    from pathlib import Path

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / REFERENCE_DIR
        folder.mkdir()
        sample.to_parquet(folder / "sample.parquet", index=False)
        (folder / "baseline.json").write_text(json.dumps(baseline, indent=2, default=str))
        mlflow.log_artifacts(str(folder), REFERENCE_DIR)


def load_reference(
    client, name: str, alias: str = PRODUCTION, tracking_uri: str | None = None
) -> tuple[Any, pd.DataFrame, dict]:
    """The model version behind `alias` with its stored reference sample and baseline.

    Raises RegistryError when there is no such version or it has no reference stored.
    """
    import json
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        raise RegistryError(f"model {name} has no {alias!r} version") from e
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path=REFERENCE_DIR,
                dst_path=tmp,
                tracking_uri=tracking_uri,
            )
        except (MlflowException, OSError) as e:
            raise RegistryError(f"{name} version {mv.version} has no stored reference: {e}") from e
        sample = pd.read_parquet(Path(local) / "sample.parquet")
        baseline = json.loads((Path(local) / "baseline.json").read_text())
    return mv, sample, baseline
