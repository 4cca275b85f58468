"""Each step of `training_job`, whole: the assets are thin adapters over these, and
`benchmarks/direct.py` calls the same functions without Dagster.

A step takes its inputs (carrying their provenance), the spec, its settings and, where it talks
to MLflow, an explicit `MlflowClient` and run id; it checks that its inputs belong together,
does its work, logs to that run and returns a value stamped with what it was made from.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlassets.ml import provenance
from mlassets.ml.defaults import SPLIT, TRAINING, SplitSettings, TrainingSettings
from mlassets.ml.faults import failpoint
from mlassets.ml.provenance import Candidate, ProvenanceError, Rows
from mlassets.ml.records import (
    EstimateOnTest,
    EvaluationProvenance,
    EvaluationReport,
    GateVerdict,
    Promotion,
    Registration,
    Staged,
)

SPLIT_NAMES = ("train", "validation", "test")


@contextlib.contextmanager
def active_run(client, run_id: str) -> Iterator[None]:
    """Make `run_id` MLflow's active run for the fluent logging calls (log_model, log_table).

    When it already is (the Dagster shell resumes its run around each step) nothing changes;
    otherwise it is resumed and ended when the block ends. Those calls take no client, so the
    process's tracking URI must be the client's: whoever starts the process sets it (the
    `mlflow` resource around a step, `benchmarks/direct.py` at its start); this never does.
    """
    import mlflow

    if mlflow.get_tracking_uri() != client.tracking_uri:
        raise RuntimeError(
            f"MLflow's tracking URI is {mlflow.get_tracking_uri()!r}, the step's client logs to "
            f"{client.tracking_uri!r}: set it where the process starts (mlflow.set_tracking_uri)"
        )
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id):
        yield


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Quality:
    """One Great Expectations pass over a raw table, the names of the checks that failed, and the
    table with its record (fingerprint and verdict)."""

    outcomes: list
    failed: list[str]
    rows: Rows


@dataclass
class RawRows:
    """`raw_data`'s rows: the source's first (`source_rows` of them), then the landed batches'
    (`batches`, with the label files joined to them: `labels`); `consumed`, the batches the run
    accounts for (trained on, or left out of the window)."""

    rows: pd.DataFrame
    batches: list
    consumed: list
    labels: Any = None  # labels.LabelJoin, or None without batches or a labels folder
    source_rows: int = 0


def read_raw(
    source_uri: str,
    landing_uri: str | None,
    spec,
    batches: list[str] = (),
    consumed: list[str] = (),
    labels_uri: str | None = None,
) -> RawRows:
    """The source table plus the named landed `batches`, with the label files of `labels_uri`
    joined to those batches' rows by id (as monitoring joined them). Refuses batches that are
    missing or unreadable, naming them; a row still without a label is the data-quality checks'
    to refuse."""
    from mlassets.ml.data import read_table
    from mlassets.ml.labels import join_labels, read_labels
    from mlassets.ml.landing import list_batches, read_batches

    df = read_table(source_uri, spec)
    if not batches and not consumed:
        return RawRows(df, [], [], None, len(df))
    landed = {b.name: b for b in list_batches(landing_uri)}
    wanted = list(dict.fromkeys([*batches, *consumed]))
    missing = [n for n in wanted if n not in landed]
    if missing:
        raise ProvenanceError(f"batches not found in {landing_uri}: {missing}")
    extra, used, errors = read_batches([landed[n] for n in batches], spec)
    if errors:
        raise ProvenanceError(f"unreadable batches: {errors}")
    joined, source_rows = None, len(df)
    if labels_uri and used:
        extra, joined = join_labels(extra, read_labels(labels_uri, spec), spec)
    if used:
        df = pd.concat([df, extra.drop(columns="_batch")], ignore_index=True)
    return RawRows(df, used, [landed[n] for n in wanted], joined, source_rows)


def validate_raw(
    df: pd.DataFrame,
    spec,
    batches: list[dict] | None = None,
    min_per_class: int | None = None,
    label_files: list[dict] | None = None,
    source_rows: int | None = None,
) -> Quality:
    """Validate `df` with the spec's suite; its record holds its fingerprint and the verdict.

    `min_per_class`: rows each label class needs for the run's split and folds (default: for
    the default settings, `validation.min_rows_per_class`). `batches` and `label_files`: the
    landed files it holds rows and labels of, for its record; `source_rows`: how many of its
    first rows are the source's (the rest the batches': the drift reference keeps the parts)."""
    from mlassets.ml.data import fingerprint
    from mlassets.ml.validation import validate

    outcomes = validate(df, spec, min_per_class=min_per_class)
    failed = sorted({o.check for o in outcomes if not o.success})
    record = provenance.raw_record(
        spec, fingerprint(df), len(df), failed, batches or [], label_files, source_rows
    )
    return Quality(outcomes, failed, provenance.stamp(df, record))


def make_features(raw: Rows, spec) -> Rows:
    """The spec's features, refused for rows that failed their data-quality checks."""
    from mlassets.ml.data import fingerprint
    from mlassets.ml.features import build_features

    record = provenance.of(raw)
    provenance.require_quality(record, "features")
    provenance.require_spec(record, spec, "features", "raw_data")
    df = build_features(raw.frame, spec)
    return provenance.stamp(df, {**record, "features": fingerprint(df)})


@dataclass
class SplitResult:
    frames: dict[str, Rows]  # train, validation, test
    verdict: dict[str, Any]
    passed: bool


def make_splits(features: Rows, spec, settings: SplitSettings = SPLIT) -> SplitResult:
    """Seeded split and its check; each part carries the fingerprints of all three parts."""
    from mlassets.ml.data import fingerprint, target
    from mlassets.ml.splitting import check_splits, split

    record = provenance.of(features)
    provenance.require_quality(record, "splits")
    provenance.require_spec(record, spec, "splits", "features")
    df = features.frame
    parts = split(
        df,
        target(df, spec),
        test_fraction=settings.test_fraction,
        validation_fraction=settings.validation_fraction,
        seed=settings.seed,
        stratify=settings.stratify,
        time_column=spec.timestamp if settings.time_ordered else None,
    )
    verdict = check_splits(parts, lambda d: target(d, spec), spec.id)
    passed = verdict["disjoint"] and (
        verdict["stratified"] or not settings.stratify or settings.time_ordered
    )
    frames = dict(zip(SPLIT_NAMES, (parts.train, parts.validation, parts.test), strict=True))
    fingerprints = {name: fingerprint(part) for name, part in frames.items()}
    stamped = {
        name: provenance.stamp(
            part,
            {**record, "split": fingerprints, "split_check": {"passed": passed}, "part": name},
        )
        for name, part in frames.items()
    }
    return SplitResult(stamped, verdict, passed)


# -- training ------------------------------------------------------------------------------------


def require_folds(y: pd.Series, cv_folds: int, label: str) -> None:
    """Refuse, naming the label and the counts, a training set whose classes cannot fill the
    search's stratified folds (sklearn would fail mid-search, naming neither). `raw_data`'s
    `label_classes` check catches this for the run's settings; this is for a partial run whose
    split or folds differ from those the data was checked for."""
    from mlassets.ml.data import DataError

    counts = {int(k): int(v) for k, v in y.value_counts().items()}
    if len(counts) < 2 or min(counts.values()) < cv_folds:
        raise DataError(
            f"the training set's label {label!r} has {counts} rows per class (1 = positive): "
            f"each class needs at least cv_folds={cv_folds} for the search's folds; add rows or "
            "lower cv_folds"
        )


@dataclass
class Trained:
    candidate: Candidate
    search: Any  # training.SearchResult
    choice: Any  # threshold.ThresholdChoice
    estimator: str
    seconds: float
    threshold_plot: bytes | None


def train_and_log(
    client,
    run_id: str,
    train_set: Rows,
    validation_set: Rows,
    spec,
    settings: TrainingSettings | Any = TRAINING,
    *,
    progress: Callable[[int, int, float], None] | None = None,
    dagster_run_id: str | None = None,
) -> Trained:
    """Tune the Pipeline on `train_set`, its threshold on `validation_set`, log both to `run_id`.

    Refuses a train and validation set from different splits, a failed split check, data that
    failed its quality checks, or a spec that changed since the data was read.
    """
    from mlassets.ml.data import target
    from mlassets.ml.estimation import METHODS, fit_calibration
    from mlassets.ml.features import input_frame
    from mlassets.ml.report import log_threshold_choice
    from mlassets.ml.threshold import choose_threshold
    from mlassets.ml.training import estimator_for, train_candidate

    record = provenance.of(train_set)
    split = provenance.require_same_split(
        "candidate_model", train_set=record, validation_set=provenance.of(validation_set)
    )
    provenance.require_quality(record, "candidate_model")
    provenance.require_split_passed(record, "candidate_model")
    provenance.require_spec(record, spec, "candidate_model", "train_set")
    train, validation = train_set.frame, validation_set.frame
    if settings.strategy != "fixed":  # every other strategy cross-validates
        require_folds(target(train, spec), settings.cv_folds, spec.label.column)
    if settings.calibration not in METHODS:  # before the search, not after it
        raise ValueError(
            f"calibration {settings.calibration!r} is unknown (known: {', '.join(METHODS)})"
        )
    estimator = estimator_for(settings.strategy, settings.estimator)
    started = time.perf_counter()
    result = train_candidate(
        input_frame(train, spec),
        target(train, spec),
        spec,
        **settings.search_settings(),
        progress=progress,
    )
    seconds = time.perf_counter() - started
    choice = choose_threshold(
        result.model,
        input_frame(validation, spec),
        target(validation, spec),
        metric=settings.threshold_metric,
        tune=settings.tune_threshold,
        seed=settings.seed,
    )
    # calibrated on the same validation rows the threshold was tuned on, never the test rows
    calibration = fit_calibration(
        choice.model,
        input_frame(validation, spec),
        target(validation, spec),
        settings.calibration,
        seed=settings.seed,
    )
    candidate = Candidate(
        choice.model,
        {
            "digest": provenance.model_digest(choice.model),
            "calibration": calibration.to_dict(),
            "trained_on": split["train"],
            **{
                k: record.get(k)
                for k in (
                    "spec",
                    "spec_digest",
                    "data",
                    "quality",
                    "batches",
                    "label_files",
                    "source_rows",
                )
            },
            "split": split,
            "split_check": record.get("split_check"),
            "dagster_run_id": dagster_run_id,
            "mlflow_run_id": run_id,
        },
    )
    with active_run(client, run_id):
        import mlflow

        mlflow.log_params(
            {
                "strategy": settings.strategy,
                "estimator": estimator,
                "cv_folds": settings.cv_folds,
                "scoring": settings.scoring,
                "seed": settings.seed,
                "train_rows": len(train),
                "train_fingerprint": split["train"],
                "data_fingerprint": record["data"],
                "candidate_digest": candidate.digest,
                "calibration": calibration.method,
                **{f"best_{k}": v for k, v in result.best_params.items()},
            }
        )
        plot = log_threshold_choice(choice)
        mlflow.log_metric("search_seconds", seconds)
        if result.placement is not None:  # which joblib backend ran the fits, and where
            mlflow.log_param("search_backend", result.placement.backend)
            mlflow.set_tag("mlassets.search_placement", result.placement.summary())
        if result.best_score is not None:
            mlflow.log_metric(f"best_cv_{settings.scoring}", result.best_score)
        if not result.cv_table.empty:
            mlflow.log_table(result.cv_table.astype(str), artifact_file="cv_results.json")
    return Trained(candidate, result, choice, estimator, seconds, plot)


# -- evaluation ----------------------------------------------------------------------------------


def evaluate_and_log(
    client,
    run_id: str,
    candidate: Candidate,
    test_set: Rows,
    spec,
    settings: dict[str, Any] | None = None,
    *,
    dagster_run_id: str | None = None,
):
    """Judge `candidate` on `test_set` against production: every gate, once; log it to `run_id`.

    `settings` are `build_evaluation`'s keyword arguments (`EvaluationConfig.report_settings()`).
    The report records the candidate's digest and the test rows' fingerprint, which registration
    compares with what it is given. Refuses a candidate trained on another split (a stale one).
    """
    from mlassets.ml.data import fingerprint, target
    from mlassets.ml.features import input_frame
    from mlassets.ml.report import build_evaluation, load_baseline, log_report

    record = provenance.of(test_set)
    split = provenance.require_same_split(
        "evaluation_report", candidate_model=candidate.provenance, test_set=record
    )
    provenance.require_spec(record, spec, "evaluation_report", "test_set")
    provenance.require_spec(candidate.provenance, spec, "evaluation_report", "candidate_model")
    test = test_set.frame
    X, y = input_frame(test, spec), target(test, spec)
    evaluation = build_evaluation(
        candidate.model,
        X,
        y,
        test[spec.sensitive],
        load_baseline(client, spec),
        **(settings or {}),
    )
    est = estimation_on_test(candidate, X, y)
    report = evaluation.report.model_copy(
        update={
            "estimation": est,
            "provenance": EvaluationProvenance(
                candidate=candidate.digest,
                test_rows=fingerprint(test),
                split=split,
                spec=spec.name,
                spec_digest=provenance.spec_digest(spec),
                dagster_run_id=dagster_run_id,
            ),
            "mlflow_run_id": run_id,
        }
    )
    with active_run(client, run_id):
        artifacts = log_report(report, evaluation.images)
        if est is not None:
            import mlflow

            mlflow.log_metrics(
                {
                    **{
                        f"test_estimated_{k}": v.estimate
                        for k, v in est.metrics.items()
                        if v.estimate is not None
                    },
                    "test_calibrated_brier": est.calibrated_brier,
                    "test_calibrated_expected_calibration_error": est.calibrated_ece,
                }
            )
    evaluation.report = report.model_copy(update={"artifacts": artifacts})
    return evaluation


def estimation_on_test(
    candidate: Candidate, X: pd.DataFrame, y: pd.Series
) -> EstimateOnTest | None:
    """What the estimate says on the test rows, beside what their labels say: the baseline
    that estimates on unlabelled rows are compared with (like with like: an estimate's small
    bias cancels), and how well the calibrated probability fits labels it never saw."""
    from mlassets.ml.estimation import Calibration, estimate_model
    from mlassets.ml.explain import calibration
    from mlassets.ml.records import jsonable

    record = candidate.provenance.get("calibration")
    if not record:  # a candidate made before calibration existed
        return None
    cal = Calibration.from_dict(record)
    est, scored = estimate_model(candidate.model, cal, X)
    fit = calibration(y, scored.p)
    return EstimateOnTest.model_validate(
        jsonable(
            {
                **est.to_dict(),
                "calibration": cal.method,
                # which calibration made this baseline: registration refuses another beside it
                "calibration_digest": provenance.calibration_digest(record),
                "calibrated_brier": fit["brier"],
                "calibrated_ece": fit["expected_calibration_error"],
            }
        )
    )


# -- registry ------------------------------------------------------------------------------------

# Rows of training features kept with each version as the drift reference (a seeded sample).
REFERENCE_ROWS = 50_000


def register_candidate(
    client,
    run_id: str,
    candidate: Candidate,
    evaluation: EvaluationReport,
    train_set: Rows,
    test_set: Rows,
    spec,
    tags: dict[str, str] | None = None,
    description: str = "",
) -> Registered:
    """Register `candidate` as a new version of `spec.name`, only if the values agree.

    Refused (ProvenanceError, every reason listed) unless the candidate is the one `evaluation`
    judged on this `test_set`, every gate of that evaluation passed, it was trained on this
    `train_set`, from data that passed its quality checks under the current spec. The version is
    created `pending` with its provenance as tags and marked `registered` once its model and
    drift reference are logged. Returns its record, the gates it passed and its tags.
    """
    import json

    from mlassets.ml.data import fingerprint
    from mlassets.ml.drift import reference_sample
    from mlassets.ml.features import input_frame
    from mlassets.ml.reference import origins
    from mlassets.ml.registry import log_pipeline, log_reference, mark_registered, register
    from mlassets.ml.requests import negative_label

    train, test = train_set.frame, test_set.frame
    refusals = provenance.registration_refusals(
        candidate, evaluation, fingerprint(train), fingerprint(test), spec
    )
    if refusals:
        raise ProvenanceError(f"not registering {spec.name}: " + " | ".join(refusals))
    cp, ep = candidate.provenance, evaluation.provenance
    compared = evaluation.champion_challenger.production_version
    all_tags = {
        "data_fingerprint": str(cp["data"]),
        "train_fingerprint": str(cp["trained_on"]),
        "train_rows": str(len(train)),
        "test_fingerprint": str(ep.test_rows),
        "candidate_digest": candidate.digest,
        "spec_digest": str(cp["spec_digest"]),
        "gates": json.dumps(
            {
                g.name: g.model_dump(include={"passed", "value", "threshold"})
                for g in evaluation.gates
            },
            sort_keys=True,
        ),
        **{f"test_{k}": f"{v:.6f}" for k, v in evaluation.metrics.items()},
        **(tags or {}),
    }
    # the run stays active until the version is marked registered: a sweep abandons a pending
    # version only once its run has ended
    with active_run(client, run_id):
        calibration = cp.get("calibration")
        # the label values the served model answers in: the spec's, else the ones trained on
        negative = negative_label(spec, train[spec.label.column])
        info = log_pipeline(
            candidate.model, input_frame(test, spec), spec, calibration, negative=negative
        )
        # the training rows in their parts (`reference.origins`): the source's, the batches'
        reference = reference_sample(
            train,
            [*spec.input_columns, spec.label.column],
            REFERENCE_ROWS,
            parts=origins(train.index, cp.get("source_rows")),
        )
        log_reference(
            reference,
            {
                "metrics": evaluation.metrics,
                "data_fingerprint": cp["data"],
                "batches": cp.get("batches") or [],
                "label_files": cp.get("label_files") or [],
                "train_rows": len(train),
                "reference_rows": len(reference),
                "candidate": candidate.digest,
                # what estimating performance on unlabelled rows needs (mlassets.ml.estimation)
                "estimation": (
                    {"calibration": calibration, "test": evaluation.estimation.model_dump()}
                    if calibration and evaluation.estimation
                    else None
                ),
            },
        )
        mv = register(
            client,
            spec.name,
            info.model_uri,
            run_id,
            all_tags,
            description=description,
            model_id=getattr(info, "model_id", None),
        )
        failpoint("version_created")  # a crash here leaves a `pending` version: never promotable
        mark_registered(client, spec.name, str(mv.version))
    record = Registration(
        name=spec.name,
        version=str(mv.version),
        run_id=run_id,
        model_uri=info.model_uri,
        candidate=candidate.digest,
        test_rows=ep.test_rows,
        evaluated_against=None if compared is None else str(compared),
    )
    return Registered(record, {g.name: g for g in evaluation.gates}, all_tags)


@dataclass
class Registered:
    """What `register_candidate` did: the version's record (the asset's value), and the gates
    it passed and the tags it carries (shown as metadata, not passed on)."""

    record: Registration
    gates: dict[str, GateVerdict]
    tags: dict[str, str]


def stage(
    client,
    registered: Registration,
    candidate: Candidate,
    test_set: Rows,
    spec,
    *,
    holder: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Staged, dict[str, Any]]:
    """Point `staging` at the registered version once it loads from the registry and predicts
    exactly like `candidate` on `test_set`; refused for any other candidate or test set.
    `holder` (the run id) holds the model's lease for the move (`registry.set_alias_verified`).
    Returns the staged version's record and the parity check's figures."""
    from mlassets.ml.data import fingerprint
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import PRODUCTION, STAGING, alias_version, set_alias_verified

    name, version = registered.name, registered.version
    test = test_set.frame
    if registered.candidate != candidate.digest:
        raise ProvenanceError(
            f"{name} version {version} holds candidate {registered.candidate}, not the "
            f"candidate_model given ({candidate.digest}): materialize registered_model with this "
            "candidate (and its evaluation) first; staging not moved"
        )
    if registered.test_rows != fingerprint(test):
        raise ProvenanceError(
            f"test_set is not the one {name} version {version} was evaluated on: materialize the "
            "registry group in the run that evaluated it; staging not moved"
        )
    compared = registered.evaluated_against

    def production_unchanged(client) -> None:
        production = alias_version(client, name, PRODUCTION)
        if production not in (compared, version):
            raise ProvenanceError(
                f"production of {name} is version {production}, but version {version} was "
                f"evaluated against {compared or 'no production model'}: materialize "
                "evaluation_report and the registry again; staging not moved"
            )

    production_unchanged(client)  # before the seconds of loading, and again right before moving
    X = input_frame(test, spec)
    check = set_alias_verified(
        client,
        name,
        version,
        STAGING,
        X,
        candidate.predict(X),
        production_unchanged,
        holder=holder,
        log=log,
    )
    staged = Staged(
        name=name, version=version, candidate=candidate.digest, evaluated_against=compared
    )
    return staged, check


def promote_staged(
    client,
    staged: Staged,
    *,
    holder: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Promotion:
    """Make the staged version `production` (the one it replaces becomes `previous`).

    Refused unless `staging` still names this version (a rollback, or a newer run, moved it) and,
    compare-and-set, `production` is still the version the candidate was compared with in its
    evaluation (beats_production judged it against that one); `registry.promote` also refuses a
    version not `registered` (abandoned, rolled back). Both checks and the moves happen under
    the model's lease, held by `holder` (the run id): no rollback can come in between.
    """
    from mlassets.ml.registry import STAGING, RegistryError, alias_version, promote

    name, version = staged.name, staged.version

    def still_staged(client) -> None:
        current = alias_version(client, name, STAGING)
        if current != version:
            raise RegistryError(
                f"staging_model says {name} version {version}, but @staging is version "
                f"{current} (moved by a rollback or a newer run): materialize the registry "
                "group again; production not moved"
            )

    still_staged(client)  # at once, without waiting for the lease; again under it
    moved = promote(
        client,
        name,
        version,
        staged.evaluated_against,
        precondition=still_staged,
        holder=holder,
        log=log,
    )
    previous = moved["previous"]
    return Promotion(
        name=name,
        production=str(moved["production"]),
        previous=None if previous is None else str(previous),
    )
