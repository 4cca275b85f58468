"""The model registry: register atomically, verify, promote by alias, roll back.

Aliases (`staging`, `production`, `previous`) replace MLflow's deprecated stages. An alias moves
only after the version it will point at has loaded from the registry and predicted exactly like
the in-memory model.

A version's lifecycle lives in its tag `mlassets.status`: `register` creates it `pending`,
`mark_registered` makes it `registered` once the registration step has logged everything, `abandon`
marks a version that must never serve, and `rollback` marks the version it leaves `rolled_back`.
Only `registered` versions (or versions made before the tag existed) are staged or promoted, so a
run killed half-way leaves nothing that looks promotable; `rollback` may also return to a
`rolled_back` version when asked by number.

Nothing is unpickled: every load goes through `verify_flavor`, which accepts only the sklearn
flavor in skops format holding types within `SKOPS_TRUSTED_TYPES`, whatever the MLmodel declares.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.bounded import clip
from mlassets.ml.status import (
    ABANDONED,
    ABANDONED_REASON_TAG,
    PENDING,
    REGISTERED,
    ROLLED_BACK,
    STATUS_TAG,
)
from mlassets.ml.training import SKOPS_TRUSTED_TYPES

STAGING, PRODUCTION, PREVIOUS = "staging", "production", "previous"
ALIASES = (PRODUCTION, STAGING, PREVIOUS)

PROMOTED_FROM_TAG = "mlassets.promoted_from"
ROLLED_BACK_FROM_TAG = "mlassets.rolled_back_from"
ROLLED_BACK_BY_TAG = "mlassets.rolled_back_by"

SKOPS_FORMAT = "skops"
SKLEARN_LOADER = "mlflow.sklearn"  # versions registered before models carried their features
SERVING_LOADER = "mlassets.ml.serving"
# MLflow 3.17 refuses every sklearn format, skops included, unless this is true; mlassets.settings
# sets it to false so that nothing loads a model through MLflow unchecked.
ALLOW_DESERIALIZATION = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


class RegistryError(RuntimeError):
    """A registry operation that was refused or undone; the registry is as it was."""


def _raise_if_transient(e: BaseException) -> None:
    """Raise `e` again, unwrapped, when it is a service's passing failure: a dropped connection
    or a locked store says nothing of the model, so it must reach the step's retry policy and
    never become a RegistryError verdict ("has no version", "does not load")."""
    from mlassets.ml.services import is_transient

    if is_transient(e):
        raise e


def log_pipeline(
    model,
    X_example: pd.DataFrame,
    spec=None,
    calibration: dict[str, Any] | None = None,
    name: str = "model",
    negative: Any = None,
):
    """Log a fitted Pipeline to the active MLflow run in skops format, served by mlassets' loader.

    The signature has no input schema with a spec (`serving.signature`: the model takes the
    spec's raw columns as pandas, JSON or CSV give them and coerces them; their spec types are
    in the MLmodel's `metadata`; without a spec, the example's columns as they are), the pyfunc
    loader
    `mlassets.ml.serving` (labels, or the probability on request; with `calibration`, a
    `estimation.Calibration` as a dict, the calibrated probability too). With a spec, its rules
    for the input columns and its label values travel with the version (`serving.json`, see
    `requests.ServingRules`): the served model refuses or flags rows that break them and answers
    the spec's labels; `negative` is the negative label seen in training, for a spec whose label
    column lists no `values` (`requests.negative_label`). Untrusted types beyond
    `SKOPS_TRUSTED_TYPES` make MLflow refuse the model; we never fall back to pickle.
    """
    import mlflow
    from mlflow.models import Model

    from mlassets.ml import serving
    from mlassets.ml.requests import rules_from_spec

    rules = rules_from_spec(spec, negative) if spec else None
    labels = model.predict(X_example.head(5))
    sig = serving.signature(spec, X_example, rules.labels(labels) if rules else labels)
    example = X_example.head(5)
    if sig.inputs is not None:  # a model logged without a spec: as its signature types it
        example = serving.request_frame(example, sig.inputs)
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=serving,
        flavor_name="sklearn",
        sk_model=model,
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        calibration=calibration,
        rules=rules.to_dict() if rules else None,
        signature=sig,
        input_example=example,
        metadata=serving.model_metadata(spec) if spec else None,
        # the flavor's own pins (installed sklearn, skops, ...): skips MLflow's slow
        # subprocess that re-imports the model to infer requirements
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )


# --- the version lifecycle ---------------------------------------------------------------------


def register(
    client,
    name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    description: str = "",
    timeout_s: float = 60.0,
    model_id: str | None = None,
):
    """Create a `pending` model version with its tags in one call and wait until it is READY.

    `pending` keeps it unpromotable until `mark_registered`, so a step killed before it finished
    logging leaves nothing an alias can move to. Any error once the version exists (not READY in
    time, FAILED_REGISTRATION, an interrupt) deletes it, or abandons it if deleting fails.
    `model_id` (the logged model's id, for `models:/m-...` URIs) is what an MLflow tracking server
    needs to accept such a source.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as e:
        _raise_if_transient(e)
        client.create_registered_model(name, description=f"Managed by mlassets: {name}")
    mv = client.create_model_version(
        name,
        model_uri,
        run_id=run_id,
        tags={**tags, STATUS_TAG: PENDING},
        description=description,
        await_creation_for=0,  # we wait ourselves, with our timeout and our clean-up
        model_id=model_id,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while mv.status != "READY":
            if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise RegistryError(
                    f"model {name} version {mv.version} did not register: {mv.status}"
                )
            time.sleep(0.2)
            mv = client.get_model_version(name, mv.version)
    except BaseException as e:
        _discard(client, name, str(mv.version), f"registration failed: {type(e).__name__}: {e}")
        raise
    return mv


def _discard(client, name: str, version: str, reason: str) -> None:
    """Delete a version that failed to register; abandon it if it cannot be deleted."""
    try:
        client.delete_model_version(name, version)
    except Exception:
        with contextlib.suppress(Exception):
            abandon(client, name, version, reason)


def version_status(client, name: str, version: str | int) -> str:
    """The version's `mlassets.status`; a version made before the tag existed counts as registered.

    Raises RegistryError when the version does not exist.
    """
    return model_version(client, name, version).tags.get(STATUS_TAG, REGISTERED)


def model_version(client, name: str, version: str | int):
    """The model version, or a RegistryError naming it when it does not exist (a transient
    store error is raised as it is, for the step's retry policy)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as e:
        _raise_if_transient(e)
        raise RegistryError(f"model {name} has no version {str(version)!r}") from e


def mark_registered(client, name: str, version: str | int) -> None:
    """Make a `pending` version `registered`: the registration step logged everything it holds.

    Call it last in that step. Idempotent for a registered version; refuses any other status (an
    abandoned version stays abandoned).
    """
    version = str(version)
    status = version_status(client, name, version)
    if status == REGISTERED:
        return
    if status != PENDING:
        raise RegistryError(
            f"{name} version {version} has {STATUS_TAG} {status!r}; only a pending version "
            "can be marked registered"
        )
    client.set_model_version_tag(name, version, STATUS_TAG, REGISTERED)


def abandon(client, name: str, version: str | int, reason: str) -> None:
    """Mark a version that must never serve (`abandoned`, with the reason); its files stay.

    Refuses the production version: roll back first, so that production never names an
    abandoned version. Other aliases are left as they are; none can move to it again.
    """
    version = str(version)
    model_version(client, name, version)
    if alias_version(client, name, PRODUCTION) == version:
        raise RegistryError(
            f"{name} version {version} is production; roll back to another version before "
            "abandoning it"
        )
    client.set_model_version_tag(name, version, ABANDONED_REASON_TAG, (reason or "?")[:1000])
    client.set_model_version_tag(name, version, STATUS_TAG, ABANDONED)


def _require_registered(client, name: str, version: str, action: str) -> None:
    """Refuse `action` on a version that is not `registered` (pending, abandoned, rolled back)."""
    mv = model_version(client, name, version)
    status = mv.tags.get(STATUS_TAG, REGISTERED)
    if status == REGISTERED:
        return
    why = {
        PENDING: "its registration never finished",
        ABANDONED: f"abandoned: {mv.tags.get(ABANDONED_REASON_TAG, 'no reason recorded')}",
        ROLLED_BACK: "it was rolled back; return to it with rollback_job's to_version",
    }.get(status, "unknown status")
    raise RegistryError(
        f"{name} version {version} has {STATUS_TAG} {status!r} ({why}); {action} refused: "
        "only registered versions take an alias"
    )


# --- loading: skops with our trusted list, nothing else ----------------------------------------


def _inside(root: Path, relative: Any, what: str, key: str) -> Path:
    """`root / relative` if it is a file inside `root`; a tampered MLmodel may point anywhere."""
    if not isinstance(relative, str) or not relative:
        raise RegistryError(f"{what}: MLmodel's {key} is {relative!r}, not a file name")
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise RegistryError(f"{what}: MLmodel's {key} {relative!r} is not a file of the model")
    return path


def verify_flavor(model_dir: str | Path, what: str) -> Path:
    """Refuse a downloaded model unless loading it can only run skops with our trusted list.

    Checks the `MLmodel` file and the skops file without deserializing anything: the sklearn
    flavor in skops format; a declared trusted list within `SKOPS_TRUSTED_TYPES` (MLflow's loader
    trusts whatever the file declares); a pyfunc flavor that loads that same file through
    `mlflow.sklearn` and ships no code; and a skops file whose types are all within our list.
    Returns the skops file. `what` names the model in messages (e.g. "model m version 3").
    """
    import skops.io
    import yaml

    root = Path(model_dir).resolve()
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise RegistryError(f"{what} has no MLmodel file; only sklearn models in skops are loaded")
    try:
        meta = yaml.safe_load(mlmodel.read_text()) or {}
        flavors = dict(meta.get("flavors") or {})
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as e:
        raise RegistryError(f"{what}: its MLmodel file is unreadable ({e})") from e
    sklearn = flavors.get("sklearn")
    if not isinstance(sklearn, dict):
        raise RegistryError(
            f"{what} has no sklearn flavor (flavors: {sorted(map(str, flavors))}); "
            "only sklearn models in skops are loaded"
        )
    declared = sklearn.get("serialization_format")
    if declared != SKOPS_FORMAT:
        raise RegistryError(
            f"{what} declares serialization_format {declared!r}; only {SKOPS_FORMAT} is loaded"
        )
    listed = sklearn.get("skops_trusted_types") or []
    beyond = (
        sorted({str(t) for t in listed} - set(SKOPS_TRUSTED_TYPES))
        if isinstance(listed, list)
        else [repr(listed)]
    )
    if beyond:
        raise RegistryError(
            f"{what} declares skops_trusted_types beyond mlassets' list: {beyond}; refused"
        )
    if sklearn.get("code"):
        raise RegistryError(f"{what} ships code ({sklearn['code']!r}); refused")
    file = _inside(root, sklearn.get("pickled_model"), what, "sklearn pickled_model")
    pyfunc = flavors.get("python_function")
    if pyfunc is not None:
        loader = pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None
        if loader not in (SERVING_LOADER, SKLEARN_LOADER):
            raise RegistryError(
                f"{what} declares pyfunc loader_module {loader!r}; only {SERVING_LOADER} "
                f"(or {SKLEARN_LOADER}) is loaded"
            )
        if pyfunc.get("code"):
            raise RegistryError(f"{what} ships code ({pyfunc['code']!r}); refused")
        for key in ("model_path", "data"):
            if key in pyfunc and _inside(root, pyfunc[key], what, f"pyfunc {key}") != file:
                raise RegistryError(
                    f"{what}: pyfunc {key} {pyfunc[key]!r} is not the skops file {file.name!r}"
                )
    try:
        found = skops.io.get_untrusted_types(file=file)  # reads the schema; builds no object
    except Exception as e:
        raise RegistryError(
            f"{what}: {file.name} is not a readable skops file ({type(e).__name__}: {e})"
        ) from e
    untrusted = sorted(set(found) - set(SKOPS_TRUSTED_TYPES))
    if untrusted:
        raise RegistryError(f"{what}: {file.name} holds types we do not trust: {untrusted}")
    return file


@contextlib.contextmanager
def _downloaded(artifact_uri: str, what: str, tracking_uri: str | None = None) -> Iterator[Path]:
    """The model's files copied to a private temp folder: what is verified is what gets loaded."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="mlassets-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError) as e:
            _raise_if_transient(e)
            raise RegistryError(f"{what} could not be downloaded from {artifact_uri}: {e}") from e
        yield Path(local)


def _version_files(client, name: str, version: str) -> str:
    """Where the files of version `version` of `name` are, asked of `client` (its explicit
    URIs); a missing version is a RegistryError, a transient failure is raised as it is."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_download_uri(name, version)
    except MlflowException as e:
        _raise_if_transient(e)
        raise RegistryError(f"model {name} has no version {version!r}") from e


def load_verified_model(client, name: str, version: str | int):
    """The version's sklearn model, loaded with skops and mlassets' own trusted list.

    For in-process use (baselines, monitoring). The trusted list the MLmodel file declares is
    never used: a tampered file could declare anything. Raises RegistryError naming the model,
    the version and what was refused.
    """
    import skops.io

    version = str(version)
    what = f"model {name} version {version}"
    with _downloaded(_version_files(client, name, version), what, client.tracking_uri) as local:
        file = verify_flavor(local, what)
        try:
            return skops.io.load(file, trusted=SKOPS_TRUSTED_TYPES)
        except Exception as e:  # a checked local file that does not build: the version's fault
            raise RegistryError(
                f"{what} does not load here ({type(e).__name__}: {clip(str(e), 500)})"
            ) from e


def _served(local: Path, what: str):
    """The pyfunc model of checked files (`verify_flavor` first), loaded without MLflow's
    deserialization switch: mlassets' own loader (`serving`) reads the skops file with our
    trusted list, so MLflow never deserializes anything. A version of before that loader, which
    names `mlflow.sklearn`, is loaded by ours too (MLflow's would need the switch lifted, for
    the whole process) and answers 0/1 as it did."""
    import mlflow

    from mlassets.ml.serving import _load_pyfunc

    verify_flavor(local, what)
    if _loader(local) == SERVING_LOADER:
        return mlflow.pyfunc.load_model(str(local))
    return _LegacyServed(_load_pyfunc(str(local)), mlflow.models.Model.load(str(local)))


class _LegacyServed:
    """A version served by `mlflow.sklearn`'s loader, through mlassets' own: its predictions
    and its input schema, as `PyFuncModel` gives them."""

    def __init__(self, served, mlmodel) -> None:
        self.served, self.metadata = served, mlmodel

    def predict(self, X: pd.DataFrame, params: dict | None = None):
        return self.served.predict(X, params)


def _loader(local: Path) -> str | None:
    import yaml

    meta = yaml.safe_load((Path(local) / "MLmodel").read_text())
    return meta["flavors"]["python_function"].get("loader_module")


def version_predictions_match(
    client, name: str, version: str | int, X: pd.DataFrame, expected: np.ndarray
) -> dict[str, Any]:
    """`predictions_match` for version `version` of `name`, its files found through `client`
    (its explicit tracking and registry URIs), never MLflow's global ones: a step process that
    set none (a multiprocess or Celery step without `MLFLOW_TRACKING_URI`) would otherwise look
    for the model in MLflow's default store and not find it."""
    files = _version_files(client, name, str(version))
    return predictions_match(
        f"models:/{name}/{version}", X, expected, files=files, tracking_uri=client.tracking_uri
    )


def predictions_match(
    model_uri: str,
    X: pd.DataFrame,
    expected: np.ndarray,
    *,
    files: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Load `model_uri` through pyfunc (the serving path) and compare its predictions with `expected`
    (the candidate's 0/1) on the rows `X` as they are (`serving.request_frame` only converts
    them for a version registered with the strictly typed signature of before).

    A version that carries the spec's rules (`serving.json`) answers the spec's label values:
    `expected` is compared as those, and through the `checked` output, which scores every row
    it can (a row the spec forbids is still compared; one it cannot score counts as a
    mismatch) where the default output would refuse the whole batch.

    The files are downloaded once, to a private folder, and checked by `verify_flavor` before
    pyfunc sees them: pyfunc would honour whatever format and trusted list the MLmodel declares.
    MLflow's deserialization ban is never lifted (`_served`). `files` (the version's artifact
    location) and `tracking_uri`: where to download from, explicitly (`version_predictions_match`);
    without them `model_uri` is resolved on MLflow's global URIs.
    """
    from mlassets.ml.serving import OUTPUT_PARAM, load_rules, request_frame

    with _downloaded(files or model_uri, model_uri, tracking_uri=tracking_uri) as local:
        loaded = _served(local, model_uri)
        rules = load_rules(local)
    schema = loaded.metadata.get_input_schema()
    expected = np.asarray(expected).ravel()
    if rules is not None:
        answer = loaded.predict(X, params={OUTPUT_PARAM: "checked"})
        got = answer["prediction"].to_numpy(dtype=object)
        expected = np.asarray(rules.labels(expected), dtype=object).ravel()
    else:
        got = np.asarray(loaded.predict(request_frame(X, schema) if schema else X)).ravel()
    mismatched = int(np.sum(got != expected)) if got.shape == expected.shape else len(expected)
    return {"model_uri": model_uri, "rows": len(expected), "mismatched": mismatched}


# --- aliases -----------------------------------------------------------------------------------


# The batches a retrain judged and kept production for (`provenance.kept_production`), on the
# registered model: monitoring counts them as accounted for, like the batches production was
# trained on, for this version and the ones after it (the same evidence never retrains again).
JUDGED_TAG = "mlassets.judged_batches"
JUDGED_BYTES = 4_000  # the newest entries that fit (a registry tag holds 5,000 on some stores)


def judged_batches(tags: dict[str, str]) -> list[dict[str, str]]:
    """The batches (name, digest) recorded as judged (`record_judged`) in a model's tags."""
    import json

    try:
        return [{"name": n, "digest": d} for n, d in json.loads(tags.get(JUDGED_TAG) or "[]")]
    except (ValueError, TypeError):  # not ours: nothing judged
        return []


def record_judged(client, name: str, batches: list[dict]) -> list[dict[str, str]]:
    """Add `batches` to those judged on registered model `name`, the newest kept when the tag
    is full; returns the list as recorded."""
    import json

    pairs = [
        [b["name"], b["digest"]] for b in judged_batches(client.get_registered_model(name).tags)
    ]
    pairs += [[b["name"], b["digest"]] for b in batches if [b["name"], b["digest"]] not in pairs]
    while pairs and len(json.dumps(pairs)) > JUDGED_BYTES:
        pairs.pop(0)
    client.set_registered_model_tag(name, JUDGED_TAG, json.dumps(pairs))
    return [{"name": n, "digest": d} for n, d in pairs]


def alias_version(client, name: str, alias: str) -> str | None:
    """The version behind `alias`, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as e:
        # "no such model" / "no such alias" only: any other error (a server fault) must not
        # read as "no production model", which would let a candidate skip its comparison
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


# Every alias move below happens under the model's lease (`mlassets.ml.lease`): the reads that
# decide a move and the move itself are one holder's, never interleaved with another mover's.
# Each move is read back; a failure puts the aliases back, and whatever could not be put back is
# noted on the error raised (`add_note`) and logged, never swallowed.

# The newest alias moves on the registered model (who, what, before, after), a JSON list.
MOVES_TAG = "mlassets.alias_moves"
MOVES_BYTES = 4_000  # the newest entries that fit (a registry tag holds 5,000 on some stores)
PROMOTED_BY_TAG = "mlassets.promoted_by"

Log = Callable[[str], None]
_logger = logging.getLogger(__name__)


def aliases(client, name: str) -> dict[str, str]:
    """Every alias of registered model `name` and its version, in one read."""
    return {a: str(v) for a, v in sorted(client.get_registered_model(name).aliases.items())}


def require_alias(client, name: str, alias: str, expected: str | None) -> None:
    """Read `alias` back: RegistryError naming it, the version expected and the one found."""
    found = alias_version(client, name, alias)
    if found != expected:
        raise RegistryError(
            f"alias {alias!r} of {name} was just moved to {_version_text(expected)} but names "
            f"{_version_text(found)}: something moved it without the lease; check the aliases"
        )


def _version_text(version: str | None) -> str:
    return "no version" if version is None else f"version {version}"


def _move(client, name: str, alias: str, version: str | None, lease) -> None:
    """Point `alias` at `version` (None: delete it) while still holding `lease`; read it back."""
    from mlassets.ml.faults import transient_fault

    lease.verify()
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)
    transient_fault("alias_moved")
    require_alias(client, name, alias, version)


def alias_moves(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The alias moves recorded (`MOVES_TAG`) in a registered model's tags, oldest first."""
    import json

    try:
        moves = json.loads(tags.get(MOVES_TAG) or "[]")
    except ValueError:
        return []
    return moves if isinstance(moves, list) else []


def _record_move(client, name: str, lease, before: dict[str, str]) -> dict[str, Any]:
    """Add the move just made (by the lease's holder) to the model's `MOVES_TAG`."""
    import json
    from datetime import UTC, datetime

    entry = {
        "by": lease.holder,
        "action": lease.record.action,
        "lease": lease.record.token[:12],
        "held_from": lease.record.acquired,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "before": before,
        "after": aliases(client, name),
    }
    moves = [*alias_moves(client.get_registered_model(name).tags), entry]
    while len(moves) > 1 and len(json.dumps(moves)) > MOVES_BYTES:
        moves.pop(0)
    client.set_registered_model_tag(name, MOVES_TAG, json.dumps(moves))
    return entry


def _restore_aliases(client, name: str, before: dict[str, str | None]) -> list[str]:
    """Put each alias back where it was, reading it back; what failed, one text each."""
    from mlassets.ml.faults import transient_fault

    problems = []
    for alias, version in before.items():
        try:
            transient_fault("alias_restore")
            if version is None:
                if alias_version(client, name, alias) is not None:
                    client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, version)
            require_alias(client, name, alias, version)
        except Exception as e:
            problems.append(
                f"alias {alias!r} not put back to {_version_text(version)} "
                f"({type(e).__name__}: {e})"
            )
    return problems


def _restore_tags(client, name: str, version: str, before: dict[str, str | None]) -> list[str]:
    """Put each tag of `version` back as it was; what failed, one text each."""
    problems = []
    for key, value in before.items():
        try:
            if value is None:
                if key in model_version(client, name, version).tags:
                    client.delete_model_version_tag(name, version, key)
            else:
                client.set_model_version_tag(name, version, key, value)
        except Exception as e:
            problems.append(
                f"tag {key} of version {version} not put back to {value!r} "
                f"({type(e).__name__}: {e})"
            )
    return problems


def _undo(
    error: BaseException,
    client,
    name: str,
    lease,
    aliases_before: dict[str, str | None],
    tags_before: dict[str, dict[str, str | None]],
    log: Log,
) -> None:
    """After `error`, put the aliases and tags back as they were (only while the lease is still
    ours: otherwise another mover's aliases would be overwritten). Notes on `error` what was
    restored, or what could not be and where the aliases are now; logs a failed restore."""
    try:
        lease.verify()
    except Exception as e:
        problems = [f"nothing put back ({type(e).__name__}: {e})"]
    else:
        problems = _restore_aliases(client, name, aliases_before)
        for version, tags in tags_before.items():
            problems += _restore_tags(client, name, version, tags)
    try:
        now = ", ".join(f"{a} = {v}" for a, v in aliases(client, name).items()) or "none"
    except Exception as e:
        now = f"unreadable ({type(e).__name__}: {e})"
    if problems:
        note = (
            f"{name}: restoring the registry after this error failed: {'; '.join(problems)}. "
            f"Aliases now: {now}. Set them right with rollback_job (to_version)."
        )
        log(note)
    else:
        note = f"{name}: aliases and tags put back as they were (aliases now: {now})"
    error.add_note(note)


def _lease(client, name: str, holder: str | None, action: str, log: Log):
    from mlassets.ml.lease import held

    return held(client, name, holder, action, log=log)


def set_alias_verified(
    client,
    name: str,
    version: str,
    alias: str,
    X,
    expected,
    precondition=None,
    *,
    holder: str | None = None,
    log: Log | None = None,
) -> dict:
    """Point `alias` at `version` only if it is registered, loads and predicts exactly `expected`.

    `precondition(client)`, if given, runs under the model's lease right before the alias moves
    (after the seconds the load and prediction take, which happen outside it) and refuses by
    raising: a check that must still hold then. `holder` (a run id) holds the lease.
    """
    log = log or _logger.warning
    version = str(version)
    _require_registered(client, name, version, f"alias {alias!r}")
    check = version_predictions_match(client, name, version, X, expected)
    if check["mismatched"]:
        raise RegistryError(
            f"{name} version {version} mispredicts {check['mismatched']} of {check['rows']} rows "
            f"after loading from the registry; alias {alias!r} not moved"
        )
    with _lease(client, name, holder, f"stage version {version} as {alias}", log) as lease:
        if precondition is not None:
            precondition(client)
        _require_registered(client, name, version, f"alias {alias!r}")
        before = aliases(client, name)
        try:
            _move(client, name, alias, version, lease)
            _record_move(client, name, lease, before)
        except BaseException as e:
            _undo(e, client, name, lease, {alias: before.get(alias)}, {}, log)
            raise
    return check


_UNCHECKED = object()


def promote(
    client,
    name: str,
    version: str,
    expected_current: str | None | object = _UNCHECKED,
    *,
    precondition: Callable[[Any], None] | None = None,
    holder: str | None = None,
    log: Log | None = None,
) -> dict[str, str | None]:
    """Make a registered `version` production; the version it replaces becomes `previous`.

    Everything below happens under the model's lease, held by `holder` (a run id).
    `precondition(client)`, if given, runs first and refuses by raising. With `expected_current`
    it is a compare-and-set: refused (nothing moves) unless production is still that version
    (None: no production yet). The new production version records `mlassets.promoted_from`
    (the replaced version or "none") and `mlassets.promoted_by` (the holder). Promoting the
    production version again changes nothing.
    """
    log = log or _logger.warning
    version = str(version)
    _require_registered(client, name, version, "promotion")
    with _lease(client, name, holder, f"promote version {version}", log) as lease:
        if precondition is not None:
            precondition(client)
        _require_registered(client, name, version, "promotion")
        before = aliases(client, name)
        current = before.get(PRODUCTION)
        if current == version:
            return {"production": version, "previous": None}
        if expected_current is not _UNCHECKED and current != expected_current:
            raise RegistryError(
                f"production of {name} is version {current}, but version {version} was "
                f"evaluated against {expected_current or 'no production model'}: materialize "
                "evaluation_report and the registry again to compare it with the current "
                "production; production not moved"
            )
        tags = model_version(client, name, version).tags
        tags_before = {version: {k: tags.get(k) for k in (PROMOTED_FROM_TAG, PROMOTED_BY_TAG)}}
        try:
            if current is not None:
                _move(client, name, PREVIOUS, current, lease)
            _move(client, name, PRODUCTION, version, lease)
            client.set_model_version_tag(name, version, PROMOTED_FROM_TAG, current or "none")
            client.set_model_version_tag(name, version, PROMOTED_BY_TAG, lease.holder)
            _record_move(client, name, lease, before)
        except BaseException as e:
            restore = {PRODUCTION: current, PREVIOUS: before.get(PREVIOUS)}
            _undo(e, client, name, lease, restore, tags_before, log)
            raise
    return {"production": version, "previous": current}


def rollback(
    client,
    name: str,
    to_version: str | int | None = None,
    run_id: str | None = None,
    *,
    log: Log | None = None,
) -> dict[str, str]:
    """Point `production` (and `staging`) at a recorded target: `to_version`, else `previous`.

    After a rollback, staging and production both name the target; previous is cleared; roll
    further back with to_version. So running it again refuses instead of toggling back.

    Everything happens under the model's lease, held by `run_id`: the aliases read to choose the
    target are the ones moved. Refused (RegistryError, nothing changed) when there is no
    production or no target, when production already is the target, when the target is pending
    or abandoned, or when it does not load with `load_verified_model`. The version rolled back
    from gets `mlassets.status` `rolled_back` (and `mlassets.rolled_back_by` = `run_id` when
    given) and keeps no alias; the target records `mlassets.rolled_back_from` and, if it had
    been rolled back itself, becomes `registered` again. Returns production, rolled_back_from and
    staging.
    """
    log = log or _logger.warning
    if alias_version(client, name, PRODUCTION) is None:  # early, before the lease; again under it
        raise RegistryError(f"model {name} has no production version; nothing to roll back")
    with _lease(client, name, run_id, "rollback", log) as lease:
        before = aliases(client, name)
        current = before.get(PRODUCTION)
        if current is None:
            raise RegistryError(f"model {name} has no production version; nothing to roll back")
        target = str(to_version) if to_version is not None else before.get(PREVIOUS)
        if target is None:
            raise RegistryError(
                f"model {name} has no 'previous' version to roll back to (production is "
                f"version {current}); run rollback_job with to_version to choose one"
            )
        if target == current:
            raise RegistryError(
                f"production is already version {current}; nothing to roll back "
                "(to go further back, run rollback_job with to_version)"
            )
        status = version_status(client, name, target)
        if status == ROLLED_BACK and to_version is None:
            raise RegistryError(
                f"{name} version {target} (named by 'previous') was itself rolled back; return "
                "to it only by number (to_version)"
            )
        if status in (PENDING, ABANDONED):
            raise RegistryError(
                f"{name} version {target} has {STATUS_TAG} {status!r}; not rolling back to it "
                "(choose a registered version with to_version)"
            )
        try:
            load_verified_model(client, name, target)
        except Exception as e:
            from mlassets.ml.services import is_transient

            if is_transient(e):  # a dropped connection says nothing of the version: retry
                raise
            raise RegistryError(
                f"not rolling back {name} to version {target}: it does not load ({e}); "
                "choose another version with to_version"
            ) from e

        keys = (STATUS_TAG, ROLLED_BACK_BY_TAG, ROLLED_BACK_FROM_TAG)
        tags_before = {
            v: {k: model_version(client, name, v).tags.get(k) for k in keys}
            for v in (current, target)
        }
        try:
            # The version left is marked first: killed half-way, it can no longer be promoted
            # (promote requires `registered`), and no alias has moved yet.
            lease.verify()
            client.set_model_version_tag(name, current, STATUS_TAG, ROLLED_BACK)
            if run_id:
                client.set_model_version_tag(name, current, ROLLED_BACK_BY_TAG, run_id)
            if status == ROLLED_BACK:
                client.set_model_version_tag(name, target, STATUS_TAG, REGISTERED)
            client.set_model_version_tag(name, target, ROLLED_BACK_FROM_TAG, current)
            _move(client, name, STAGING, target, lease)
            _move(client, name, PRODUCTION, target, lease)
            if before.get(PREVIOUS) is not None:
                _move(client, name, PREVIOUS, None, lease)
            _record_move(client, name, lease, before)
        except BaseException as e:
            restore = {a: before.get(a) for a in (PRODUCTION, STAGING, PREVIOUS)}
            _undo(e, client, name, lease, restore, tags_before, log)
            raise
    return {"production": target, "rolled_back_from": current, "staging": target}


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
    client,
    name: str,
    alias: str = PRODUCTION,
    tracking_uri: str | None = None,
    version: str | None = None,
) -> tuple[Any, pd.DataFrame, dict]:
    """The model version behind `alias` (or `version`, when given: a promotion between looking
    the alias up and reading the reference cannot swap it) with its reference and baseline.

    Raises RegistryError when there is no such version or it has no reference stored.
    """
    import json
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = (
            client.get_model_version(name, str(version))
            if version is not None
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException as e:
        _raise_if_transient(e)
        what = f"version {version}" if version is not None else f"{alias!r} version"
        raise RegistryError(f"model {name} has no {what}") from e
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path=REFERENCE_DIR,
                dst_path=tmp,
                tracking_uri=tracking_uri,
            )
        except (MlflowException, OSError) as e:
            _raise_if_transient(e)
            raise RegistryError(f"{name} version {mv.version} has no stored reference: {e}") from e
        sample = pd.read_parquet(Path(local) / "sample.parquet")
        baseline = json.loads((Path(local) / "baseline.json").read_text())
    return mv, sample, baseline
