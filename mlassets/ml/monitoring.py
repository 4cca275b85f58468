"""Monitoring: what landed since the production model was trained, and whether to retrain.

Shared by the `recent_data` / `drift_report` assets and `drift_sensor`, so the asset shows
exactly the decision the sensor acts on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd

from mlassets.ml.labels import LabelJoin
from mlassets.ml.landing import Batch, list_batches, not_yet_trained_on, read_batches
from mlassets.spec import DatasetSpec

T = TypeVar("T")


@dataclass
class Production:
    """The production version with what drift is measured against (from MLflow alone)."""

    version: str
    run_id: str
    reference: pd.DataFrame
    baseline: dict[str, Any]
    # batches a retrain judged and kept production for (`registry.record_judged`)
    judged: list[dict[str, str]] = field(default_factory=list)

    @property
    def accounted(self) -> list[dict[str, str]]:
        """The batches this version answers for: trained on, or judged and kept."""
        return [*self.baseline.get("batches", []), *self.judged]


@dataclass
class Recent:
    """Batches that landed after the production model's training data, read and featurised.

    `batches` passed the spec's per-batch rules and make up `rows`; `errors` says, by batch name,
    why each other batch was skipped (unreadable, other columns, or a broken rule).
    """

    batches: list[Batch]
    rows: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)
    landed: int = 0
    # what joining the spec's label files did (None: the spec names no `labels` folder)
    labels: LabelJoin | None = None

    def evidence_key(self) -> str:
        """A fingerprint of every file the decision rests on: the batches and the label files
        joined to them (without label files, `landing.batches_key`). A retrain's run_key, so
        labels that arrive for batches already judged make a new run, the same files never two."""
        from mlassets.ml.drift import batches_fingerprint
        from mlassets.ml.labels import PREFIX

        files = [(b.name, b.digest) for b in self.batches]
        if self.labels is not None:
            files += [(f"{PREFIX}{f['name']}", f["digest"]) for f in self.labels.files]
        return batches_fingerprint(files)


def labelled(rec: Recent, label: str) -> tuple[list[Batch], list[str]]:
    """The batches a retraining run can train on (every row labelled), and the names of those
    still waiting for labels: they show drift, but raw_data's label checks would refuse them,
    so they are neither trained on nor consumed until their file is rewritten with labels."""
    waiting = set(rec.rows.loc[rec.rows[label].isna(), "_batch"]) if len(rec.rows) else set()
    return [b for b in rec.batches if b.name not in waiting], sorted(waiting)


class PerModel:
    """A cache holding one value per model: the one for its current version (a new version
    replaces it). Sized by the models a process watches, not by a fixed count, so the sensors
    of three or more models never evict each other (an `lru_cache(maxsize=4)` did). Keyed by
    the tracking store and the model's name; the version key says when the value is stale."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[str, Any]] = {}

    def get(self, model: tuple[str, str], version: str, build: Callable[[], T]) -> T:
        with self._lock:
            hit = self._entries.get(model)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = build()  # outside the lock: a download may take seconds
        with self._lock:
            self._entries[model] = (version, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_REFERENCES = PerModel()
_MODELS = PerModel()


def production_at(client, name: str, version: str | None) -> Production | None:
    """Version `version` of `name` with its stored reference, as `production` gives it, without
    reading the alias: for a step that judges against the version an earlier step read (None:
    there was no production then). Cached per version like `production`."""
    if version is None:
        return None
    from mlassets.ml.registry import model_version

    return _with_reference(client, name, model_version(client, name, version))


def production(client, name: str) -> Production | None:
    """The `production` version and its stored reference, or None when there is none yet.

    `client` is the registry resource's (`ModelRegistry.client()`), so a registry apart from the
    tracking store is honoured. Cached per version: a sensor ticking every minute downloads a
    reference once.
    """
    from mlflow.exceptions import MlflowException

    from mlassets.ml.registry import PRODUCTION

    try:
        mv = client.get_model_version_by_alias(name, PRODUCTION)
    except MlflowException as e:
        # no such model, or no such alias; any other error (a broken or unreachable store) is
        # not "no production model" and must say what it is
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _with_reference(client, name, mv)


def _with_reference(client, name: str, mv) -> Production:
    """Model version `mv` of `name` as a `Production`: its reference cached per model and
    version (the run id too: a version number names one run); what retrains judged is read
    each time."""
    from dataclasses import replace

    from mlassets.ml.registry import judged_batches, load_reference

    def build() -> Production:
        version, sample, baseline = load_reference(
            client, name, tracking_uri=client.tracking_uri, version=str(mv.version)
        )
        return Production(str(version.version), version.run_id, sample, baseline)

    key = f"{mv.version}:{mv.run_id}"
    cached = _REFERENCES.get((client.tracking_uri, name), key, build)
    return replace(cached, judged=judged_batches(client.get_registered_model(name).tags))


def production_model(client, spec: DatasetSpec, version: str):
    """The production Pipeline itself, taking raw rows (`features.for_raw_rows`): skops with
    mlassets' trusted list, refused in any other format (`registry.load_verified_model`).
    Cached per version."""
    from mlassets.ml.features import for_raw_rows
    from mlassets.ml.registry import load_verified_model

    model = _MODELS.get(
        (client.tracking_uri, spec.name),
        str(version),
        lambda: load_verified_model(client, spec.name, str(version)),
    )
    return for_raw_rows(model, spec)


def recent(
    landing_uri: str | None,
    spec: DatasetSpec,
    prod: Production | None,
    labels_uri: str | None = None,
) -> Recent:
    """Landed batches `prod` does not answer for yet (neither trained on nor judged and kept by
    a retrain; all of them when there is no production), each validated on its own before any
    statistic: a batch that fails is skipped, with why.
    With `labels_uri` (the spec's `labels` folder), the label files there are joined to these
    rows by id (`labels.join_labels`), and what joined and what did not is kept."""
    from mlassets.ml.features import build_features
    from mlassets.ml.labels import join_labels, read_labels

    landed = list_batches(landing_uri)
    fresh = not_yet_trained_on(landed, prod.accounted if prod else [])
    rows, read, errors = read_batches(fresh, spec, check=True)
    joined = None
    if labels_uri:
        rows, joined = join_labels(rows, read_labels(labels_uri, spec), spec)
    if len(rows):
        rows = build_features(rows, spec)
    return Recent(read, rows, errors, len(landed), joined)


def decide(spec: DatasetSpec, prod: Production, rec: Recent, thresholds, client):
    """The drift report of `rec` against `prod`'s reference, with degradation when labelled and
    the performance estimated before labels when the version carries its calibration."""
    from mlassets.ml.drift import drift_report

    labelled = spec.label.column in rec.rows and rec.rows[spec.label.column].notna().any()
    estimation = prod.baseline.get("estimation")
    scored = len(rec.rows) and (labelled or estimation)
    model = production_model(client, spec, prod.version) if scored else None
    frame = rec.rows if len(rec.rows) else pd.DataFrame(columns=prod.reference.columns)
    return drift_report(
        prod.reference,
        frame,
        spec.numeric_inputs,
        spec.features.categorical,
        config=thresholds,
        model=model,
        label=spec.label.column if labelled else None,
        positive=spec.label.positive,
        baseline=prod.baseline.get("metrics"),
        model_inputs=spec.model_inputs,
        estimation=estimation,
    )


def recorded_production(record: dict[str, Any]) -> str | None:
    """The production version recent rows were computed for (None: there was none), from
    `recent_data`'s provenance. Monitoring judges and scores them against that version, read once
    when `recent_data` ran, never against the alias read again: a promotion in between would
    judge rows "not yet trained on by version N" against version N+1's reference."""
    from mlassets.ml.provenance import ProvenanceError

    if "production_version" not in record:
        raise ProvenanceError(
            "recent_data carries no production record (written by an older mlassets): "
            "materialize recent_data first"
        )
    version = record["production_version"]
    return None if version is None else str(version)


def score_batches(model, rows: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The positive-class score and prediction of `model` for each row, with its id and batch."""
    from mlassets.ml.evaluation import positive_scores
    from mlassets.ml.features import input_frame

    X = input_frame(rows, spec)
    out = pd.DataFrame(index=rows.index)
    if spec.id:
        out[spec.id] = rows[spec.id]
    out["_batch"] = rows.get("_batch", "")
    out["score"] = positive_scores(model, X)
    out["prediction"] = model.predict(X)
    return out.reset_index(drop=True)


def estimate_figure(report):
    """Estimated against realized performance per recent batch (`estimation.plot_by_batch`),
    or None when nothing was estimated."""
    from mlassets.ml.estimation import plot_by_batch

    est = report.estimated
    if not est.by_batch:
        return None
    metric = est.by_batch_metric
    return plot_by_batch(
        est.by_batch,
        metric=metric,
        baseline=est.metrics[metric].baseline if metric in est.metrics else None,
        max_drop=report.config.max_estimated_drop,
    )


def log_drift_report(client, prod: Production, report, figure=None, tags=None) -> str:
    """Record a drift report as an MLflow run of its own, in the experiment of the production
    version's training run and tagged with that version: its estimated (and, with labels,
    realized) metrics, the report as JSON and the estimated-vs-realized plot. The training run
    stays as it was registered. Returns the run id.

    Never tagged `dagster_run_id`: the `mlflow` resource finds a Dagster run's training run by
    that tag in the experiment, and a training step of the same Dagster run would log into this.
    Tagged with this process's identity (`owner`), so a crash before it ends is swept."""
    import time

    from mlflow.entities import Metric

    from mlassets.ml.bounded import clip
    from mlassets.ml.owner import current
    from mlassets.ml.status import RUN_FAILED, RUN_FINISHED

    experiment = client.get_run(prod.run_id).info.experiment_id
    reliability = report.estimated.reliability
    unreliable = reliability.unreliable_batches if reliability else []
    run = client.create_run(
        experiment,
        run_name="drift_report",
        tags={
            **current().tags(),
            "mlassets.kind": "drift_report",
            "mlassets.production_version": prod.version,
            "mlassets.production_run_id": prod.run_id,
            "mlassets.retrain": str(report.retrain).lower(),
            "mlassets.estimate_reliable": str(report.estimated.reliable).lower(),
            "mlassets.unreliable_batches": clip(",".join(unreliable), 5_000) or "none",
            **(tags or {}),
        },
    )
    run_id = run.info.run_id
    try:
        values = {"recent_rows": report.rows, "drifted_features": len(report.drifted)}
        if reliability:
            values["outside_share"] = reliability.outside["share"]
            values["unreliable_batches"] = len(unreliable)
        for name, m in report.estimated.metrics.items():
            values.update({f"estimated_{name}": m.estimate, f"estimated_{name}_low": m.low})
            values[f"estimated_{name}_high"] = m.high
        for name, m in report.degradation.metrics.items():
            values[f"realized_{name}"] = m.current
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and v == v
            ],
        )
        client.log_dict(run_id, report.to_dict(), "drift_report.json")
        if figure is not None:
            client.log_figure(run_id, figure, "estimated_vs_realized.png")
    except BaseException:
        client.set_terminated(run_id, RUN_FAILED)
        raise
    client.set_terminated(run_id, RUN_FINISHED)
    return run_id
