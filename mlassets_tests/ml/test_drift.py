"""Drift statistics and the retrain decision (`mlassets.ml.drift`) on synthetic batches.

The batches come from `mlassets.synthetic.fraud_batch`: no drift, covariate drift (inputs move)
and concept drift (the fraud rule changes, inputs do not). The production model is a quick forest
trained on `fraud_frame` rows, as the training job would train it.
"""

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from mlassets.ml.drift import (
    TABLE_COLUMNS,
    DriftReport,
    DriftThresholds,
    adjust_pvalues,
    batches_fingerprint,
    drift_report,
    ks_wasserstein,
    plot_drift,
    psi,
    reference_sample,
)
from mlassets.ml.features import build_features
from mlassets.synthetic import BATCH_FIRST_ID, batch_seed, fraud_batch, fraud_frame

pytestmark = pytest.mark.unit

BATCH_ROWS = 20_000


@dataclass
class World:
    spec: object
    reference: pd.DataFrame
    model: object
    baseline: dict[str, float]

    def batch(self, rows: int, seed: int, drift: str = "none") -> pd.DataFrame:
        return build_features(fraud_batch(rows, seed, drift), self.spec)

    def report(self, recent: pd.DataFrame, **kwargs) -> DriftReport:
        kwargs.setdefault("model", self.model)
        kwargs.setdefault("baseline", self.baseline)
        return drift_report(
            self.reference,
            recent,
            self.spec.numeric_inputs,
            self.spec.features.categorical,
            label=self.spec.label.column,
            positive=self.spec.label.positive,
            model_inputs=self.spec.model_inputs,
            **kwargs,
        )


@pytest.fixture(scope="module")
def world(spec) -> World:
    """A forest trained on 30,000 `fraud_frame` rows, its test metrics and its reference sample."""
    from sklearn.metrics import accuracy_score, f1_score

    from mlassets.ml.data import target
    from mlassets.ml.features import input_frame
    from mlassets.ml.training import make_estimator, spec_pipeline

    train = build_features(fraud_frame(30_000, seed=7), spec)
    test = build_features(fraud_frame(10_000, seed=8), spec)
    estimator = make_estimator("random_forest", {"n_estimators": 50, "n_jobs": 2})
    model = spec_pipeline(spec, estimator)
    model.fit(input_frame(train, spec), target(train, spec))
    y, pred = target(test, spec), model.predict(input_frame(test, spec))
    baseline = {"accuracy": accuracy_score(y, pred), "f1": f1_score(y, pred)}
    columns = [*spec.input_columns, spec.label.column]
    return World(spec, reference_sample(train, columns, 50_000, seed=0), model, baseline)


# --- the decision on synthetic batches ----------------------------------------------------------


def test_no_drift_requests_no_retrain(world):
    report = world.report(world.batch(BATCH_ROWS, seed=101))

    assert not report.retrain
    assert report.drifted == [] and not report.degraded
    assert report.reasons[0].startswith("no retrain: no feature drifted")
    assert list(report.features.columns) == TABLE_COLUMNS
    assert report.features["feature"].tolist() == world.spec.input_columns
    assert report.degradation.evaluated and report.degradation.evaluated_rows == BATCH_ROWS
    assert any(r.startswith("volume: 20,000 recent rows >= 10,000") for r in report.reasons)


def test_covariate_drift_requests_retrain_naming_the_moved_features(world):
    report = world.report(world.batch(BATCH_ROWS, seed=102, drift="covariate"))

    assert report.retrain
    # feature_1, feature_2 and the category mix move; account age and purchases do not
    assert set(report.drifted) == {"feature_1", "feature_2", "category"}
    assert report.reasons[0].startswith("retrain: feature drift in feature_1, feature_2, category")
    for name in report.drifted:
        line = next(r for r in report.reasons if r.startswith(f"{name} drifted:"))
        assert "corrected p" in line and ("Wasserstein/std" in line or "Jensen-Shannon" in line)
    table = report.features.set_index("feature")
    assert (table.loc[report.drifted, "psi"] > 0.1).all()
    assert (table.loc[["total_purchases", "days_since_signup"], "effect_size"] < 0.05).all()


def test_concept_drift_with_labels_is_degradation_without_feature_drift(world):
    report = world.report(world.batch(BATCH_ROWS, seed=103, drift="concept"))

    assert report.drifted == []
    assert report.degraded and report.retrain
    metrics = report.degradation.metrics
    assert metrics["accuracy"].drop > 0.05 and metrics["f1"].drop > 0.05
    assert report.reasons[0].startswith("retrain: performance degraded (accuracy, f1)")
    assert any(r.startswith("accuracy degraded:") and "> 0.05" in r for r in report.reasons)


def test_drift_on_too_few_rows_requests_no_retrain_and_says_so(world):
    report = world.report(world.batch(5_000, seed=104, drift="covariate"))

    assert report.drifted and not report.retrain and not report.enough_rows
    assert report.reasons[0].startswith("no retrain: feature drift in")
    assert "too few rows (5,000 recent rows < 10,000 required)" in report.reasons[0]


@pytest.mark.integration
def test_false_alarms_project_rule_vs_naive_rule(world):
    """20 independent no-drift batches: the project's rule retrains at most once, and less
    often than the seed's naive rule (two-sample KS per feature at p < 0.05, categories as
    codes, no correction, no effect-size minimum; retrain if any feature fires and rows >
    10,000) on the same batches. The batches are seeded: 0 against 2 when this was written.
    """
    from scipy.stats import ks_2samp

    spec, ref = world.spec, world.reference
    codes = {
        c: {v: i for i, v in enumerate(sorted(ref[c].unique()))} for c in spec.features.categorical
    }

    def naive(recent: pd.DataFrame) -> bool:
        fired = False
        for col in spec.input_columns:
            a, b = ref[col], recent[col]
            if col in codes:
                a, b = a.map(codes[col]).fillna(-1), b.map(codes[col]).fillna(-1)
            fired |= ks_2samp(a.to_numpy(float), b.to_numpy(float)).pvalue < 0.05
        return fired and len(recent) > 10_000

    project = naive_count = 0
    for i in range(1, 21):
        recent = world.batch(BATCH_ROWS, seed=batch_seed(2024, i))
        project += world.report(recent).retrain
        naive_count += naive(recent)
    figures = f"false alarms over 20 no-drift batches: project rule {project}, naive {naive_count}"
    assert project <= 1, figures
    assert naive_count > project, figures


# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n1, n2", [(300, 500), (5_000, 40_000)])  # scipy's exact and asymptotic
def test_ks_and_wasserstein_match_scipy(n1, n2):
    from scipy.stats import ks_2samp, wasserstein_distance

    rng = np.random.default_rng(1)
    for a, b in [
        (rng.normal(0, 1, n1), rng.normal(0.05, 1.1, n2)),
        (rng.poisson(3, n1).astype(float), rng.poisson(3.2, n2).astype(float)),  # ties
    ]:
        d, p, w = ks_wasserstein(a, b)
        expected = ks_2samp(a, b)
        assert d == pytest.approx(expected.statistic, abs=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        assert w == pytest.approx(wasserstein_distance(a, b), rel=1e-9)


def test_adjust_pvalues_bh_bonferroni_none():
    from scipy.stats import false_discovery_control

    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.002])
    tested = ~np.isnan(p)
    bh = adjust_pvalues(p, "bh")
    np.testing.assert_allclose(bh[tested], false_discovery_control(p[tested]))
    np.testing.assert_allclose(
        adjust_pvalues(p, "bonferroni")[tested], np.minimum(p[tested] * 5, 1)
    )
    np.testing.assert_array_equal(adjust_pvalues(p, "none"), p)
    assert np.isnan(bh[4])
    with pytest.raises(ValueError, match="correction 'holm' is unknown"):
        adjust_pvalues(p, "holm")


def test_psi():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    # sum of (recent - reference) * ln(recent / reference): 0.1 ln 1.2 + 0.1 ln 1.25 ~= 0.0405
    assert psi(np.array([0.5, 0.5]), np.array([0.6, 0.4])) == pytest.approx(0.04055, abs=1e-5)
    assert np.isfinite(psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])))  # an empty bin


def test_correction_is_configurable(world):
    recent = world.batch(BATCH_ROWS, seed=105)
    table = {
        c: world.report(recent, config=DriftThresholds(correction=c)).features
        for c in ("bh", "bonferroni", "none")
    }
    p = table["none"]["p_value"]
    np.testing.assert_array_equal(table["none"]["corrected_p"], p)
    np.testing.assert_allclose(table["bonferroni"]["corrected_p"], np.minimum(p * len(p), 1))
    assert (table["bh"]["corrected_p"] <= table["bonferroni"]["corrected_p"] + 1e-15).all()
    with pytest.raises(ValueError, match=r"correction\n.*'bh', 'bonferroni' or 'none'"):
        DriftThresholds(correction="fdr")
    with pytest.raises(ValueError, match="alpha"):
        DriftThresholds(alpha=1.5)


def test_effect_size_minimum_stops_significant_but_tiny_shifts(world):
    """A 2 % shift in feature_2 over 200,000 rows: KS calls it significant, it is not drift."""
    recent = world.batch(200_000, seed=106)
    recent["feature_2"] *= 1.02
    report = world.report(recent, model=None)
    row = report.features.set_index("feature").loc["feature_2"]

    assert row["corrected_p"] < 0.05 and row["effect_size"] < 0.1
    assert report.drifted == [] and not report.retrain
    assert any(
        r.startswith("feature_2 differs significantly but by too little") for r in report.reasons
    )


def test_unseen_categories_are_counted(world):
    recent = world.batch(BATCH_ROWS, seed=107)
    recent.loc[:2_999, "category"] = "crypto"
    recent.loc[3_000:3_009, "category"] = None
    report = world.report(recent, model=None)
    row = report.features.set_index("feature").loc["category"]

    assert row["unseen_categories"] == 2
    assert report.unseen == {"category": {"crypto": 3_000, "<missing>": 10}}
    assert "category" in report.drifted
    assert any(
        "2 categories unseen in the reference, in 3,010 recent rows" in r for r in report.reasons
    )


def test_labels_without_model_or_with_few_labels_are_not_scored(world):
    recent = world.batch(BATCH_ROWS, seed=108, drift="concept")
    no_model = world.report(recent, model=None)
    assert not no_model.degradation.evaluated and not no_model.retrain
    assert any("20,000 labelled recent rows but no production model" in r for r in no_model.reasons)
    assert any(r.startswith("no performance estimate: the production") for r in no_model.reasons)

    recent.loc[500:, "label"] = np.nan
    few = world.report(recent)
    assert not few.degradation.evaluated and few.degradation.labelled_rows == 500
    assert any("only 500 labelled recent rows (< 1,000 needed)" in r for r in few.reasons)

    unlabelled = world.report(recent.drop(columns="label"))
    assert any(r.startswith("no labelled recent rows") for r in unlabelled.reasons)


def test_model_is_scored_on_a_stated_sample_of_many_labels(world):
    recent = world.batch(BATCH_ROWS, seed=109, drift="concept")
    report = world.report(recent, config=DriftThresholds(max_eval_rows=5_000))

    assert report.degradation.sampled and report.degradation.evaluated_rows == 5_000
    assert report.degraded
    assert any("seeded sample of 5,000 of the 20,000 labelled rows" in r for r in report.reasons)


def test_empty_and_missing_values_do_not_crash(world):
    empty = world.report(world.batch(BATCH_ROWS, seed=110).iloc[:0], model=None)
    assert not empty.retrain and empty.rows == 0
    assert empty.features["p_value"].isna().all()
    assert "0 recent rows < 10,000 required" in empty.reasons[0]

    recent = world.batch(BATCH_ROWS, seed=110)
    recent["feature_1"] = np.nan
    recent.loc[:99, "feature_2"] = np.nan
    report = world.report(recent, model=None)
    assert any(r.startswith("feature_1: not tested") for r in report.reasons)
    assert np.isnan(report.features.set_index("feature").loc["feature_1", "corrected_p"])
    assert not report.retrain

    with pytest.raises(KeyError, match="recent rows lack feature column"):
        world.report(recent.drop(columns="feature_2"))


# --- outputs and helpers ------------------------------------------------------------------------


def test_to_dict_is_json_serialisable(world):
    report = world.report(world.batch(BATCH_ROWS, seed=111, drift="covariate"))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))

    assert data["retrain"] is True and data["drifted"] == report.drifted
    assert len(data["features"]) == len(world.spec.input_columns)
    assert set(data["features"][0]) == set(TABLE_COLUMNS)
    assert data["config"]["correction"] == "bh" and data["min_rows"] == 10_000
    assert data["degradation"]["metrics"]["f1"]["baseline"] == pytest.approx(world.baseline["f1"])


def test_plot_shows_the_most_drifted_features_first(world):
    recent = world.batch(BATCH_ROWS, seed=112, drift="covariate")
    report = world.report(recent, model=None)
    fig = plot_drift(report, world.reference, recent, top_k=3)

    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert all("DRIFTED" in t for t in titles)
    assert {t.split(":")[0] for t in titles} == {"feature_1", "feature_2", "category"}
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue()[:4] == b"\x89PNG"


def test_reference_sample_is_seeded_and_bounded(world):
    df = build_features(fraud_frame(3_000, seed=3), world.spec)
    cols = world.spec.input_columns

    a, b = reference_sample(df, cols, 1_000, seed=5), reference_sample(df, cols, 1_000, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 1_000 and list(a.columns) == cols
    assert not a.equals(reference_sample(df, cols, 1_000, seed=6))
    assert len(reference_sample(df, cols, 10_000, seed=5)) == 3_000
    with pytest.raises(KeyError, match="nope"):
        reference_sample(df, [*cols, "nope"], 100, seed=0)


def test_batches_fingerprint_is_stable_and_order_free():
    from mlassets.ml.landing import Batch, batches_key

    batches = [("batch_0002.parquet", "bbbb"), ("batch_0001.parquet", "aaaa")]
    key = batches_fingerprint(batches)

    assert key == batches_fingerprint(list(reversed(batches)))
    assert len(key) == 16 and int(key, 16) >= 0
    assert key != batches_fingerprint([("batch_0002.parquet", "cccc"), batches[1]])
    assert key != batches_fingerprint(batches[:1])
    assert key == batches_key([Batch(n, f"/landing/{n}", 1, d) for n, d in batches])


# --- synthetic drift ----------------------------------------------------------------------------


def test_fraud_batch_without_drift_is_fraud_frame():
    pd.testing.assert_frame_equal(fraud_batch(2_000, seed=9), fraud_frame(2_000, seed=9))
    a = fraud_batch(2_000, seed=9, drift="covariate", first_id=50)
    pd.testing.assert_frame_equal(a, fraud_batch(2_000, seed=9, drift="covariate", first_id=50))
    assert a["user_id"].iloc[0] == 50
    with pytest.raises(ValueError, match="drift 'seasonal' is unknown"):
        fraud_batch(10, seed=1, drift="seasonal")


def test_concept_drift_keeps_the_features_and_changes_the_rule():
    base = fraud_frame(50_000, seed=10)
    concept = fraud_batch(50_000, seed=10, drift="concept")
    features = [c for c in base.columns if c != "label"]

    pd.testing.assert_frame_equal(concept[features], base[features])
    assert 0.03 <= concept["label"].mean() <= 0.08
    assert (concept["label"] & base["label"]).sum() == 0  # fraud moved somewhere else entirely


def test_covariate_drift_keeps_the_fraud_rule():
    from mlassets.synthetic import _fraud_label, _purchase_rate

    base = fraud_frame(50_000, seed=11)
    rule = _fraud_label(
        base["feature_1"].to_numpy(),
        base["feature_2"].to_numpy(),
        base["category"].to_numpy(),
        _purchase_rate(base),
        np.zeros(len(base)),
    )
    assert (rule == base["label"]).mean() > 0.99  # only the label noise differs


def test_cli_writes_batches(tmp_path):
    from mlassets.synthetic import main

    main(
        [
            "--rows",
            "500",
            "--seed",
            "3",
            "--batches",
            "3",
            "--drift",
            "covariate",
            "--out",
            str(tmp_path),
        ]
    )
    paths = sorted(tmp_path.glob("*.parquet"))
    assert [p.name for p in paths] == [
        "batch_0001.parquet",
        "batch_0002.parquet",
        "batch_0003.parquet",
    ]
    frames = [pd.read_parquet(p) for p in paths]
    ids = pd.concat(frames)["user_id"]
    assert ids.is_unique and ids.min() == BATCH_FIRST_ID
    assert not frames[0]["feature_1"].equals(frames[1]["feature_1"])

    main(["--rows", "300", "--seed", "4", "--out", str(tmp_path / "one.parquet")])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), fraud_frame(300, 4))


def test_recent_rows_are_compared_with_the_part_of_the_training_rows_they_resemble(world):
    """After a retrain on drifted batches the model was trained on the source and on those
    batches: rows like either are no drift (the mixture of both would call each drifted), rows
    like neither are, and the report says which part it compared with."""
    from mlassets.ml.reference import BATCHES, ORIGIN, SOURCE

    drifted = world.batch(20_000, seed=120, drift="covariate")
    reference = pd.concat(
        [
            world.reference.assign(**{ORIGIN: SOURCE}),
            reference_sample(drifted, list(world.reference.columns), 20_000).assign(
                **{ORIGIN: BATCHES}
            ),
        ],
        ignore_index=True,
    )
    model_world = World(world.spec, reference, world.model, world.baseline)

    clean = model_world.report(world.batch(BATCH_ROWS, seed=121))
    assert clean.drifted == [] and clean.compared["part"] == SOURCE
    assert clean.reasons[1].startswith(
        "compared with the part of the training rows the recent rows resemble most: source"
    )
    assert clean.compared["parts"][BATCHES]["drifted"]  # the mixture's half would have fired
    mixed = world.report(world.batch(BATCH_ROWS, seed=121))  # one part: as before
    assert mixed.compared["part"] == "training rows" and mixed.drifted == []

    like_batches = model_world.report(world.batch(BATCH_ROWS, seed=122, drift="covariate"))
    assert like_batches.drifted == [] and like_batches.compared["part"] == BATCHES

    beyond = world.batch(BATCH_ROWS, seed=123)
    beyond["feature_2"] = beyond["feature_2"] * 5
    far = model_world.report(beyond)
    assert "feature_2" in far.drifted and far.retrain
    assert set(far.compared["parts"]) == {SOURCE, BATCHES}
    json.dumps(far.to_dict())

    # a part too small to test against alone: the reference is one whole again
    tiny = pd.concat(
        [
            world.reference.assign(**{ORIGIN: SOURCE}),
            reference.tail(100).assign(**{ORIGIN: BATCHES}),
        ]
    )
    assert (
        World(world.spec, tiny, world.model, world.baseline)
        .report(world.batch(BATCH_ROWS, seed=124))
        .compared["part"]
        == "training rows"
    )
