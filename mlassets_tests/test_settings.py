"""One home per setting (`mlassets.ml.defaults`, `drift.DriftThresholds`): the Dagster `Config`
classes are those models, so every setting, default and description is the core's, every drift
setting is reachable from run config, and the launchpad refuses an unknown choice by name."""

import pytest

from mlassets.config import DriftConfig, EvaluationConfig, SplitConfig, TrainingConfig
from mlassets.ml.defaults import (
    EVALUATION,
    EvaluationSettings,
    SplitSettings,
    TrainingSettings,
)
from mlassets.ml.drift import DriftThresholds

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("config", "core"),
    [
        (SplitConfig, SplitSettings),
        (TrainingConfig, TrainingSettings),
        (EvaluationConfig, EvaluationSettings),
        (DriftConfig, DriftThresholds),
    ],
)
def test_each_config_is_its_core_model_with_the_same_descriptions(config, core):
    assert issubclass(config, core)
    assert config.model_fields.keys() == core.model_fields.keys()
    for name, field in core.model_fields.items():
        assert config.model_fields[name].description.startswith(field.description), name


def test_every_default_is_the_cores_and_gate_limits_defer_to_the_spec():
    assert TrainingConfig().model_dump() == TrainingSettings().model_dump()
    assert SplitConfig().model_dump() == SplitSettings().model_dump()
    assert DriftConfig().thresholds() == DriftThresholds()
    from mlassets.ml.gates import LIMITS

    evaluation = EvaluationConfig()
    assert all(getattr(evaluation, name) is None for name in LIMITS)  # unset: spec, else default
    assert evaluation.report_settings()["max_equalized_odds"] == EVALUATION.max_equalized_odds
    others = set(EvaluationSettings.model_fields) - set(LIMITS)
    assert {k: getattr(evaluation, k) for k in others} == {
        k: getattr(EVALUATION, k) for k in others
    }


def test_fairness_functions_default_to_the_evaluation_settings():
    import inspect

    from mlassets.ml import fairness

    for fn in (fairness.column_fairness, fairness.fairness_report):
        params = inspect.signature(fn).parameters
        for name in ("max_demographic_parity", "max_equalized_odds", "min_group_size"):
            if name in params and params[name].default is not inspect.Parameter.empty:
                assert params[name].default == getattr(EVALUATION, name), (fn.__name__, name)


def test_the_launchpad_refuses_an_unknown_choice_by_name():
    from dagster import DagsterInvalidConfigError, validate_run_config

    from mlassets.definitions import build_defs

    job = build_defs().resolve_job_def("fraud_detection_training_job")
    op = "fraud_detection__candidate_model"
    validate_run_config(job, {"ops": {op: {"config": {"strategy": "halving"}}}})
    with pytest.raises(DagsterInvalidConfigError) as refused:
        validate_run_config(job, {"ops": {op: {"config": {"strategy": "slow"}}}})
    said = str(refused.value)
    assert "strategy" in said and "slow" in said and "'halving'" in said, said


def test_every_drift_setting_is_reachable_from_run_config():
    """The monitoring resource's `drift` (what drift_report and the sensor judge with) takes
    every DriftThresholds field, the ones a hand copy left out included."""
    from dagster import validate_run_config

    from mlassets.definitions import build_defs

    job = build_defs().resolve_implicit_global_asset_job_def()
    drift = {"psi_bins": 5, "max_eval_rows": 2_000, "seed": 3, "metrics": ["f1"]}
    validated = validate_run_config(
        job, {"resources": {"monitoring": {"config": {"drift": drift}}}}
    )
    assert validated["resources"]["monitoring"]["config"]["drift"] == {
        **DriftThresholds().model_dump(),
        **drift,
    }
    with pytest.raises(ValueError, match=r"metrics \['auc'\] are unknown"):
        DriftThresholds(metrics=["auc"])
