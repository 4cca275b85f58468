"""Benchmark: F1 estimated before the labels (CBPE, `mlassets.ml.estimation`) against realized F1.

Per bundled table (fraud, churn) one model is trained as `training_job` trains it (strategy
`fast`, seed 42, threshold tuned and calibrations fit on the validation set), then scored on
fresh batches at covariate-shift strengths 0 to 6 (the label rule stays: the case CBPE is made
for; from 4 on, part of the rows lie beyond the training range) and on concept-drift batches
(the rule changes: the case it cannot see). A real table follows (`real_tables.census`: a model
trained on people up to 50, batches of later years and batches with a share of older people,
beyond that range). Each batch is estimated by each calibration method, by the raw
probabilities, and by NannyML's CBPE on the same model and rows, with the realized F1 from the
labels as the yardstick, and its share of rows outside the training range
(`mlassets.ml.domain`) says whether the report marks its estimate unreliable. The noise of the
estimate on unshifted batches sets the scale of `max_estimated_drop`. Every comparison is made
in one run, with fixed seeds.

Usage: .venv/bin/python -m benchmarks estimation   (BENCH_QUICK=1: smaller and fewer batches)
"""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import quick, table

TABLES = ("fraud", "churn")
# beyond 3, the bundled tables' shift carries part of the rows beyond the training range
STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
CENSUS = "census"
CENSUS_YEARS = (2016, 2017, 2018)  # later surveys of people in the training range
CENSUS_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # of people older than any trained on
MIN_BATCH_ROWS = 10_000  # the smallest batch the target speaks of
TARGET_MAE = 0.03
SEED = 42  # split, search, threshold: the pipeline's default
SOURCE_SEED = 42  # the training table's rows
NONE = "none"  # the raw (uncalibrated) probability used as p


@dataclass(frozen=True)
class Plan:
    """How much data one run uses; quick mode only checks the code."""

    source_rows: int
    batch_rows: int
    seeds: int  # batches per strength (and concept-drift batches per strength)
    noise_seeds: int  # unshifted batches of MIN_BATCH_ROWS for the noise table
    census_rows: int = 15_000  # rows per census batch
    census_seeds: int = 4  # census batches per later year (and per share of older people)


def plan() -> Plan:
    if quick():
        return Plan(8_000, 10_000, seeds=1, noise_seeds=5, census_rows=10_000, census_seeds=1)
    return Plan(source_rows=50_000, batch_rows=20_000, seeds=3, noise_seeds=20)


def default_method() -> str:
    """The pipeline's calibration method, so the benchmark judges what runs in production."""
    from mlassets.ml.defaults import TRAINING

    return getattr(TRAINING, "calibration", "temperature")


def methods() -> tuple[str, ...]:
    from mlassets.ml.estimation import METHODS

    return (*METHODS, NONE)


@dataclass
class Trained:
    """A model trained as the pipeline trains it, with what the estimates need."""

    table: str
    spec: Any
    model: Any
    threshold: float
    calibrations: dict[str, Any]
    validation: Any  # feature frame
    test: Any  # feature frame
    seconds: float
    domain: Any = None  # mlassets.ml.domain.Domain of the training rows


def one_core():
    """One OpenMP/BLAS thread: gradient boosting's threads spin against a busy shared machine's
    other work (8,000 rows took 93 s instead of 6 s at a load of 4 on 2 cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def train(table_name: str, rows: int, *, strategy: str = "fast", seed: int = SEED) -> Trained:
    """benchmarks/direct.py's `pipeline` (features, split, search, threshold: candidate_model's
    calls), one process and one core, then every calibration on the validation rows."""
    from mlassets.spec import BUNDLED_SPECS, load_spec
    from mlassets.synthetic import table_batch

    spec = load_spec(BUNDLED_SPECS / f"{table_name}.yaml")
    df = table_batch(table_name, rows, seed=SOURCE_SEED)
    return train_frame(table_name, df, spec, strategy=strategy, seed=seed)


def train_frame(name: str, df, spec, *, strategy: str = "fast", seed: int = SEED) -> Trained:
    """`train` on a table of any spec (the real one too)."""
    with one_core():
        return _train(name, df, spec, strategy, seed)


def _train(name: str, df, spec, strategy: str, seed: int) -> Trained:
    from benchmarks.direct import pipeline
    from mlassets.ml.data import target
    from mlassets.ml.domain import Domain
    from mlassets.ml.estimation import METHODS, fit_calibration
    from mlassets.ml.features import input_frame

    t = time.perf_counter()
    result = pipeline(df, spec, strategy, n_jobs=1, seed=seed, validate=False)
    parts = result["splits"]
    X_val, y_val = input_frame(parts.validation, spec), target(parts.validation, spec)
    calibrations = {m: fit_calibration(result["model"], X_val, y_val, m) for m in METHODS}
    return Trained(
        name,
        spec,
        result["model"],
        result["threshold"],
        calibrations,
        parts.validation,
        parts.test,
        time.perf_counter() - t,
        # what the report's reliability mark reads (the version's reference: its training rows)
        Domain.of(parts.train, spec.numeric_inputs, spec.features.categorical),
    )


@dataclass
class Scored:
    """One frame's model outputs: raw probability, decisions, labels, raw calibration scores."""

    proba: Any
    predicted: Any
    y: Any
    raw: dict[str, Any] = field(default_factory=dict)  # by Calibration.response


def score(trained: Trained, features) -> Scored:
    """Run the model once per frame; the estimators below only read these arrays."""
    import numpy as np

    from mlassets.ml.data import target
    from mlassets.ml.estimation import raw_score
    from mlassets.ml.evaluation import positive_scores
    from mlassets.ml.features import input_frame

    X = input_frame(features, trained.spec)
    with one_core():
        out = Scored(
            proba=np.asarray(positive_scores(trained.model, X), dtype=float),
            predicted=(np.asarray(trained.model.predict(X)) == 1).astype(int),
            y=target(features, trained.spec).to_numpy(),
        )
        for response in {c.response for c in trained.calibrations.values()}:
            out.raw[response] = raw_score(trained.model, X, response)
    return out


def ours(trained: Trained, s: Scored, method: str, seed: int = 0) -> dict[str, float]:
    """Our F1 estimate {"estimate", "low", "high"} with `method`'s probabilities (or raw ones)."""
    from mlassets.ml.estimation import estimate

    if method == NONE:
        p, draws = s.proba, []
    else:
        cal = trained.calibrations[method]
        raw = s.raw[cal.response]
        p, draws = cal.apply(raw), [c.apply(raw) for c in cal.refits()]
    return estimate(p, s.predicted, metrics=("f1",), seed=seed, p_draws=draws).metrics["f1"]


def batch_row(
    trained: Trained, df, *, default: str, nml=None, seed: int = 0, **labels: Any
) -> dict[str, Any]:
    """Realized F1 and every estimate of one raw batch `df`; `nml` a fitted NannyML CBPE or None.

    Times the default method and NannyML from the model's outputs on (estimate only, not
    scoring), so the two do the same work.
    """
    from mlassets.ml.estimation import realized
    from mlassets.ml.features import build_features

    features = build_features(df, trained.spec)
    s = score(trained, features)
    outside = trained.domain.outside(features).share if trained.domain is not None else 0.0
    row: dict[str, Any] = {
        **labels,
        "rows": len(df),
        "realized": realized(s.y, s.predicted, ("f1",))["f1"],
        "est": {m: ours(trained, s, m, seed) for m in methods() if m != default},
        # the share of rows outside the training range, and whether the report trusts it
        "outside": outside,
        "reliable": outside <= max_outside_share(),
    }
    t = time.perf_counter()
    row["est"][default] = ours(trained, s, default, seed)
    row["ours_s"] = time.perf_counter() - t
    row["nml"], row["nml_s"] = (None, None) if nml is None else nannyml_estimate(nml, s)
    return row


def max_outside_share() -> float:
    """The report's bar (`DriftThresholds.max_outside_share`), so the benchmark judges the
    default."""
    from mlassets.ml.drift import DriftThresholds

    return DriftThresholds().max_outside_share


def _versus(default: str) -> list[str]:
    """The columns that set our estimate beside NannyML's, each with its error."""
    return [f"ours ({default})", "abs. error", "NannyML", "abs. error"]


def load_nannyml():
    """nannyml, or None when the `bench` extra is not installed (`make bench` installs it)."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # its usage analytics, read at import
    try:
        import nannyml
    except ImportError:
        return None
    return nannyml


def _frame(proba, predicted, y=None):
    import pandas as pd

    cols = {"y_pred_proba": proba, "y_pred": predicted}
    if y is not None:
        cols["y_true"] = y
    return pd.DataFrame(cols)


def nannyml_fit(nml, trained: Trained):
    """NannyML's CBPE on the validation rows (raw probability, decision, label): the rows our
    calibration sees. It calibrates the probabilities itself (isotonic) when that helps."""
    v = score(trained, trained.validation)
    est = nml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        metrics=["f1"],
        chunk_number=1,  # one estimate per frame handed over
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The resulting number of chunks is too low")
        return est.fit(_frame(v.proba, v.predicted, v.y))


def nannyml_estimate(est, s: Scored) -> tuple[dict[str, float], float]:
    """NannyML's F1 {"estimate", "low", "high"} on one batch (no labels given), and seconds."""
    frame = _frame(s.proba, s.predicted)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The resulting number of chunks is too low")
        t = time.perf_counter()
        res = est.estimate(frame)
        seconds = time.perf_counter() - t
    out = res.filter(period="analysis", metrics=["f1"]).to_df().iloc[0]
    return {
        "estimate": float(out[("f1", "value")]),
        "low": float(out[("f1", "lower_confidence_boundary")]),
        "high": float(out[("f1", "upper_confidence_boundary")]),
    }, seconds


def run_table(table_name: str, p: Plan, nml, default: str) -> dict[str, Any]:
    """Train once, then every batch of one table: covariate, concept, and unshifted noise."""
    from mlassets.ml.estimation import realized
    from mlassets.synthetic import batch_seed, table_batch

    trained = train(table_name, p.source_rows)
    est = nannyml_fit(nml, trained) if nml is not None else None
    base = TABLES.index(table_name) * 1_000  # each table its own batch streams
    covariate, concept = [], []
    for i, strength in enumerate(STRENGTHS):
        for k in range(p.seeds):
            seed = batch_seed(base + 1, i * 100 + k)
            df = table_batch(table_name, p.batch_rows, seed, "covariate", strength=strength)
            covariate.append(batch_row(trained, df, default=default, nml=est, strength=strength))
            seed = batch_seed(base + 2, i * 100 + k)
            df = table_batch(table_name, p.batch_rows, seed, "concept")
            concept.append(batch_row(trained, df, default=default, nml=est))
    v = score(trained, trained.validation)
    s = score(trained, trained.test)
    on_test = ours(trained, s, default)["estimate"]
    noise = []
    for k in range(p.noise_seeds):
        df = table_batch(table_name, MIN_BATCH_ROWS, batch_seed(base + 3, k))
        row = batch_row(trained, df, default=default)
        noise.append(row["est"][default]["estimate"] - on_test)
    return {
        "trained": trained,
        "covariate": covariate,
        "concept": concept,
        "test_rows": len(trained.test),
        "test_estimate": on_test,
        "test_realized": realized(s.y, s.predicted, ("f1",))["f1"],
        "validation_realized": realized(v.y, v.predicted, ("f1",))["f1"],
        "noise": noise,
        "nml_calibrated": None if est is None else bool(est.needs_calibration),
    }


def run_census(p: Plan, nml, default: str) -> dict[str, Any]:
    """The real table: a model trained on the 2015 survey's people up to `TRAINING_AGE`, then
    batches of the same ages in later surveys (a real shift inside the training range) and
    batches of 2016 where a share of the people are older (beyond it)."""
    import pandas as pd

    from benchmarks.real_tables import TRAINING_AGE, census, census_spec
    from mlassets.ml.estimation import realized

    df, spec = census(), census_spec()
    young = df["AGEP"] <= TRAINING_AGE
    source = df[(df["year"] == 2015) & young]
    if quick():
        source = source.sample(p.source_rows, random_state=SOURCE_SEED)
    trained = train_frame(CENSUS, source.reset_index(drop=True), spec)
    est = nannyml_fit(nml, trained) if nml is not None else None
    batches = []
    for i, year in enumerate(CENSUS_YEARS):
        pool = df[(df["year"] == year) & young]
        for k in range(p.census_seeds):
            batch = pool.sample(p.census_rows, random_state=100 * i + k)
            batches.append(
                batch_row(trained, batch, default=default, nml=est, batch=f"{year}", share=0.0)
            )
    later, older = df[(df["year"] == 2016) & young], df[(df["year"] == 2016) & ~young]
    for i, share in enumerate(CENSUS_SHARES):
        for k in range(p.census_seeds):
            n_old = round(p.census_rows * share)
            batch = pd.concat(
                [
                    later.sample(p.census_rows - n_old, random_state=1_000 + 10 * i + k),
                    older.sample(n_old, random_state=2_000 + 10 * i + k),
                ],
                ignore_index=True,
            )
            batches.append(
                batch_row(
                    trained,
                    batch,
                    default=default,
                    nml=est,
                    batch=f"2016, {share:.0%} over {TRAINING_AGE}",
                    share=share,
                )
            )
    s = score(trained, trained.test)
    return {
        "trained": trained,
        "source_rows": len(source),
        "batches": batches,
        "test_realized": realized(s.y, s.predicted, ("f1",))["f1"],
        "nml_calibrated": None if est is None else bool(est.needs_calibration),
    }


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _err(rows: list[dict], method: str | None) -> list[float]:
    """|estimate - realized| per batch for one of our methods (None: NannyML)."""
    out = []
    for r in rows:
        e = r["nml"] if method is None else r["est"][method]
        if e is not None:
            out.append(abs(e["estimate"] - r["realized"]))
    return out


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _covered(rows: list[dict], method: str | None) -> tuple[float | None, float | None]:
    """(share of batches whose realized F1 lies in the interval, mean interval width)."""
    hits, widths = [], []
    for r in rows:
        e = r["nml"] if method is None else r["est"][method]
        if e is not None:
            hits.append(e["low"] <= r["realized"] <= e["high"])
            widths.append(e["high"] - e["low"])
    return _mean([float(h) for h in hits]), _mean(widths)


def report(
    results: dict[str, dict],
    p: Plan,
    default: str,
    nml_note: str | None,
    census: dict[str, Any] | None = None,
    census_note: str | None = None,
) -> str:
    """The markdown section: tables (a) to (g), then (h) and (i): within the training range
    and beyond it, on the bundled tables and the real one (`census`, or why not)."""
    nml_missing = nml_note is not None
    absent = "not installed"
    out = []
    facts = [
        f"Per table one model, trained as `training_job` trains it on {p.source_rows:,} source "
        f"rows (strategy `fast`, seed {SEED}, one process; threshold tuned and calibrations fit "
        "on the validation set, as the pipeline does), "
    ]
    facts.append(
        ", ".join(
            f"{t}: {r['trained'].seconds:.0f} s to train, threshold {r['trained'].threshold:.3f}, "
            f"{len(r['trained'].validation):,} validation rows "
            f"({int(r['trained'].validation[r['trained'].spec.label.column].eq(r['trained'].spec.label.positive).sum())} positives)"
            for t, r in results.items()
        )
        + ". "
    )
    facts.append(
        f"Batches of {p.batch_rows:,} fresh rows, {p.seeds} seed(s) per covariate-shift strength "
        f"({', '.join(f'{s:g}' for s in STRENGTHS)}; the label rule stays), and as many "
        "concept-drift batches. Default calibration: "
        f"`{default}` (`mlassets.ml.defaults.TRAINING.calibration`). NannyML CBPE (v"
        f"{_nml_version()}) is fit on the same validation rows (raw probability, decision, label) "
        "and estimates the same batches from the same model's outputs."
    )
    calibrated = {t: r.get("nml_calibrated") for t, r in results.items()}
    if not nml_missing:
        facts.append(
            " NannyML calibrated the probabilities itself (its `needs_calibration`): "
            + ", ".join(f"{t} {'yes' if c else 'no'}" for t, c in calibrated.items())
            + "; where it did not, its estimate is the raw-probability one (`none`)."
        )
    out.append("".join(facts))
    if nml_missing:
        out.append(f"NannyML: {nml_note}")

    for t, r in results.items():
        rows = []
        for strength in STRENGTHS:
            batch = [b for b in r["covariate"] if b["strength"] == strength]
            ours_e, nml_e = _err(batch, default), _err(batch, None)
            nml_vals = [b["nml"]["estimate"] for b in batch if b["nml"] is not None]
            rows.append(
                [
                    f"{strength:g}",
                    f"{sum(b['rows'] for b in batch):,}",
                    _f(_mean([b["realized"] for b in batch])),
                    _f(_mean([b["est"][default]["estimate"] for b in batch])),
                    _f(_mean(ours_e)),
                    absent if nml_missing else _f(_mean(nml_vals)),
                    absent if nml_missing else _f(_mean(nml_e)),
                ]
            )
        out.append(
            f"**(a) {t}: estimated vs realized F1 by covariate-shift strength** (means over "
            f"{p.seeds} batch(es) of {p.batch_rows:,} rows; abs. error is the mean per-batch "
            "absolute error)\n\n"
            + table(["strength", "rows", "realized F1", *_versus(default)], rows)
        )

    rows = []
    for m in (*methods(), None):
        name = "NannyML CBPE" if m is None else m + (" (default)" if m == default else "")
        if m == NONE:
            name += " (raw probability)"
        line = [name]
        for r in results.values():
            errs = _err(r["covariate"], m)
            if m is None and nml_missing:
                line += [absent, absent]
            else:
                line += [_f(_mean(errs), 4), _f(max(errs) if errs else None, 4)]
        rows.append(line)
    header = ["method"]
    for t in results:
        header += [f"{t} MAE", f"{t} max"]
    n_cov = len(next(iter(results.values()))["covariate"])
    out.append(
        f"**(b) error of estimated F1 over the {n_cov} covariate-shift batches per table**\n\n"
        + table(header, rows)
    )

    rows, collapsed = [], []
    for t, r in results.items():
        ours_cov, ours_w = _covered(r["covariate"], default)
        nml_cov, nml_w = _covered(r["covariate"], None)
        if nml_w == 0:
            collapsed.append(f"{t} (F1 on the validation rows: {r['validation_realized']:.3f})")
        rows.append(
            [
                t,
                str(len(r["covariate"])),
                f"{ours_cov:.0%}" if ours_cov is not None else "-",
                _f(ours_w),
                absent if nml_missing else f"{nml_cov:.0%}",
                absent if nml_missing else _f(nml_w),
            ]
        )
    out.append(
        "**(c) interval coverage on covariate-shift batches**: share of batches whose realized F1 "
        f"lies in our 95 % interval (`{default}`: the labels' noise and the calibration's, from "
        "its bootstrap refits on the validation rows) and in NannyML's bounds (its default: ±3 "
        "sampling errors)\n\n"
        + table(
            ["table", "batches", "ours: covered", "ours: width", "NannyML: covered", "width"],
            rows,
        )
        + (
            f"\n\nNannyML's bounds have no width on {', '.join(collapsed)}: it takes its "
            "sampling error from the reference (validation) rows, where F1 did not vary."
            if collapsed
            else ""
        )
    )

    rows = []
    for t, r in results.items():
        c = r["concept"]
        nml_vals = [b["nml"]["estimate"] for b in c if b["nml"] is not None]
        rows.append(
            [
                t,
                str(len(c)),
                _f(r["test_realized"]),
                _f(_mean([b["realized"] for b in c])),
                _f(_mean([b["est"][default]["estimate"] for b in c])),
                _f(_mean(_err(c, default))),
                absent if nml_missing else _f(_mean(nml_vals)),
                absent if nml_missing else _f(_mean(_err(c, None))),
            ]
        )
    out.append(
        "**(d) concept drift, the known limit**: the label rule changes while the inputs do not, "
        "so calibrated probabilities still describe the old rule and every CBPE estimate stays "
        "where it was (means over the batches; labels remain the signal for this)\n\n"
        + table(
            ["table", "batches", "realized F1 on test rows", "realized F1", *_versus(default)],
            rows,
        )
    )

    rows, floors, margins = [], [], []
    for t, r in results.items():
        dev = [abs(d) for d in r["noise"]]
        sd = statistics.stdev(r["noise"]) if len(r["noise"]) > 1 else float("nan")
        # the baseline is itself an estimate, its sd that of a batch scaled by 1/sqrt(rows)
        floor = max(3 * sd * math.sqrt(1 + MIN_BATCH_ROWS / r["test_rows"]), max(dev))
        bias = max(_err(r["covariate"], default))
        floors.append(floor)
        margins.append(floor + bias)
        rows.append(
            [
                t,
                f"{r['test_rows']:,}",
                _f(r["test_estimate"]),
                str(len(r["noise"])),
                _f(statistics.fmean(r["noise"]), 4),
                _f(sd, 4),
                _f(max(dev), 4),
                _f(floor, 4),
                _f(bias, 4),
            ]
        )
    out.append(
        f"**(e) noise of the estimate without shift**: {p.noise_seeds} unshifted batches of "
        f"{MIN_BATCH_ROWS:,} rows per table, estimated F1 (`{default}`) minus the estimate on the "
        "test rows (the retrain signal's baseline)\n\n"
        + table(
            [
                "table",
                "test rows",
                "estimate on test rows",
                "batches",
                "mean difference",
                "sd",
                "max abs. difference",
                "noise floor",
                "max abs. error (b)",
            ],
            rows,
        )
        + "\n\nNoise floor: the larger of 3 sd √(1 + batch rows / test rows) (a batch's estimate "
        "against the baseline's, itself an estimate whose sd scales as 1/√rows) and the largest "
        "|difference|. A `max_estimated_drop` "
        f"below {_ceil_cent(max(floors)):.2f} would let unshifted batches of "
        f"{MIN_BATCH_ROWS:,} rows fire the retrain signal; the floor plus the default method's "
        f"largest error under shift (table b) gives {_ceil_cent(max(margins)):.2f} (the larger "
        "table, rounded up to a cent)."
    )

    rows = []
    for t, r in results.items():
        b = r["covariate"]
        ours_t = statistics.median(x["ours_s"] for x in b)
        nml_t = [x["nml_s"] for x in b if x["nml_s"] is not None]
        nml_med = statistics.median(nml_t) if nml_t else None
        rows.append(
            [
                t,
                str(len(b)),
                f"{ours_t * 1000:.1f} ms",
                absent if nml_missing else f"{nml_med * 1000:.1f} ms",
                absent if nml_missing else f"{nml_med / ours_t:.1f}x",
            ]
        )
    out.append(
        f"**(f) time per {p.batch_rows:,}-row batch** (estimate only, from the model's outputs: "
        "calibration + F1 with its interval vs `CBPE.estimate`; median over the covariate batches)"
        "\n\n" + table(["table", "batches", "ours", "NannyML", "NannyML / ours"], rows)
    )

    verdicts = []
    for t, r in results.items():
        mae = _mean(_err(r["covariate"], default))
        ok = mae is not None and mae <= TARGET_MAE and p.batch_rows >= MIN_BATCH_ROWS
        verdicts.append(f"{t} **{'met' if ok else 'not met'}** (MAE {_f(mae, 4)})")
    out.append(
        f'**(g) target "MAE ≤ {TARGET_MAE} on batches ≥ {MIN_BATCH_ROWS:,} rows"** '
        f"(`{default}`, covariate-shift batches of {p.batch_rows:,} rows): " + "; ".join(verdicts)
    )
    sets = {t: r["covariate"] for t, r in results.items()}
    if census is not None:
        sets[f"{CENSUS} (real)"] = census["batches"]
    out.append(_within_and_beyond(sets, default, nml_missing))
    if census is not None:
        out.append(_census_table(census, default, nml_missing))
    elif census_note:
        out.append(f"**(i) the real table**: {census_note}")
    return "\n\n".join(out)


def _within_and_beyond(sets: dict[str, list[dict]], default: str, nml_missing: bool) -> str:
    """(h): error and interval coverage apart for batches the report trusts (at most
    `max_outside_share` of their rows outside the training range) and the ones it marks."""
    absent = "not installed"
    rows = []
    for t, batches in sets.items():
        groups = (
            ("within (estimate trusted)", [b for b in batches if b["reliable"]]),
            ("beyond (marked unreliable)", [b for b in batches if not b["reliable"]]),
            ("all, as shown before the mark", batches),
        )
        for kind, group in groups:
            if not group:
                rows.append([t, kind, "0", "-", "-", "-", "-", "-", "-"])
                continue
            ours_e, nml_e = _err(group, default), _err(group, None)
            ours_c, ours_w = _covered(group, default)
            nml_c, _ = _covered(group, None)
            rows.append(
                [
                    t,
                    kind,
                    str(len(group)),
                    f"{_mean([b['outside'] for b in group]):.1%}",
                    f"{_f(_mean(ours_e), 4)} ({_f(max(ours_e), 4)})",
                    f"{ours_c:.0%} at {_f(ours_w)}",
                    absent if nml_missing else f"{_f(_mean(nml_e), 4)} ({_f(max(nml_e), 4)})",
                    absent if nml_missing else f"{nml_c:.0%}",
                ]
            )
    return (
        "**(h) within the training range and beyond it**: batches with at most "
        f"{max_outside_share():.0%} of their rows outside the training range (a numeric value "
        "beyond every training value, an unseen category; `DriftThresholds.max_outside_share`) "
        "against the batches the report marks unreliable; the bundled tables' covariate-shift "
        "batches and every batch of the real table. Error: mean (max) |estimated - realized F1|; "
        "covered: share of batches whose realized F1 lies in the interval, at its mean width\n\n"
        + table(
            [
                "table",
                "kind",
                "n",
                "rows outside (mean)",
                "ours: error",
                "ours: covered",
                "NannyML: error",
                "NannyML: covered",
            ],
            rows,
        )
    )


def _census_table(census: dict[str, Any], default: str, nml_missing: bool) -> str:
    """(i): the real table batch by batch (means over the batches of each kind)."""
    from benchmarks.real_tables import TRAINING_AGE

    absent = "not installed"
    batches = census["batches"]
    rows = []
    for name in dict.fromkeys(b["batch"] for b in batches):
        group = [b for b in batches if b["batch"] == name]
        ours_c, _ = _covered(group, default)
        nml_c, _ = _covered(group, None)
        nml_vals = [b["nml"]["estimate"] for b in group if b["nml"] is not None]
        rows.append(
            [
                name,
                str(len(group)),
                f"{_mean([b['outside'] for b in group]):.1%}",
                _f(_mean([b["realized"] for b in group])),
                _f(_mean([b["est"][default]["estimate"] for b in group])),
                _f(_mean(_err(group, default)), 4),
                f"{ours_c:.0%}",
                absent if nml_missing else _f(_mean(nml_vals)),
                absent if nml_missing else _f(_mean(_err(group, None)), 4),
                absent if nml_missing else f"{nml_c:.0%}",
                "no" if all(b["reliable"] for b in group) else "yes",
            ]
        )
    return (
        f"**(i) a real shift beyond the training range** (US Census ACS employment, "
        f"Massachusetts, shipped with NannyML): a model trained as `training_job` trains it on "
        f"{census['source_rows']:,} people of the 2015 survey aged 0-{TRAINING_AGE} "
        f"(realized F1 on its test rows {census['test_realized']:.3f}), batches of "
        f"{batches[0]['rows']:,} people: the same ages in later surveys, and 2016 with a share "
        f"of people older than any it was trained on, where employment follows another rule "
        "(retirement)\n\n"
        + table(
            [
                "batch",
                "n",
                "rows outside",
                "realized F1",
                f"ours ({default})",
                "error",
                "covered",
                "NannyML",
                "error",
                "covered",
                "marked unreliable",
            ],
            rows,
        )
    )


def _ceil_cent(x: float) -> float:
    return math.ceil(x * 100 - 1e-9) / 100


def _nml_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nannyml")
    except PackageNotFoundError:
        return " not installed"


def main(argv: list[str] | None = None) -> str:
    """The section's markdown (argv is unused: BENCH_QUICK chooses the plan)."""
    p, default = plan(), default_method()
    nml = load_nannyml()
    note = None
    if nml is None:
        note = (
            "not installed: its columns say so. `make bench` installs the `bench` extra "
            "(nannyml, statsmodels) and runs it."
        )
    results = {t: run_table(t, p, nml, default) for t in TABLES}
    from benchmarks.real_tables import census_folder

    census, census_note = None, None
    if census_folder() is None:
        census_note = "not run: the table comes with nannyml (`make bench` installs it)."
    else:
        census = run_census(p, nml, default)
    return report(results, p, default, note, census, census_note)


if __name__ == "__main__":
    print(main())
