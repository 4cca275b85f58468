"""The provenance core: what each value says it was made from, and the refusals it drives."""

import pandas as pd
import pytest

from mlassets.ml import provenance
from mlassets.ml.provenance import Candidate, ProvenanceError
from mlassets.spec import load_spec
from mlassets_tests.reports import evaluation_report

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def spec():
    return load_spec()


def _record(spec, passed=True, split=None, split_passed=True):
    record = provenance.raw_record(spec, "d" * 16, 10, [] if passed else ["values_allowed"], [])
    record["split"] = split or {"train": "t1", "validation": "v1", "test": "s1"}
    record["split_check"] = {"passed": split_passed}
    return record


def _candidate(spec, **overrides) -> Candidate:
    record = _record(spec)
    prov = {
        "digest": "c1",
        "trained_on": "t1",
        **{k: record[k] for k in ("spec", "spec_digest", "data", "quality", "batches")},
        "split": record["split"],
        "split_check": record["split_check"],
        **overrides,
    }
    return Candidate(model=None, provenance=prov)


def _evaluation(spec, candidate="c1", test_rows="s1", gates_passed=True, gates=None):
    names = provenance.REQUIRED_GATES if gates is None else gates
    return evaluation_report(
        gates={n: gates_passed or n != "f1_gate" for n in names},
        provenance={
            "candidate": candidate,
            "test_rows": test_rows,
            "split": {"train": "t1", "validation": "v1", "test": "s1"},
            "spec": spec.name,
            "spec_digest": provenance.spec_digest(spec),
            "dagster_run_id": None,
        },
    )


def test_a_record_travels_beside_its_frame_as_a_private_copy():
    df = pd.DataFrame({"a": [1, 2]})
    record = {"data": "x", "quality": {"passed": True, "failed": []}}
    rows = provenance.stamp(df, record)
    record["data"] = "changed"
    assert provenance.of(rows)["data"] == "x"
    assert rows.frame is df and df.attrs == {}  # beside the frame, never in its pandas attrs
    provenance.of(rows)["data"] = "mine"  # a reader's copy: the record is unchanged
    assert rows.provenance["data"] == "x"


def test_a_bare_frame_has_no_record_and_says_so():
    with pytest.raises(provenance.ProvenanceError, match="got a DataFrame: materialize"):
        provenance.of(pd.DataFrame({"a": [1]}))


def test_consistent_values_register(spec):
    assert (
        provenance.registration_refusals(_candidate(spec), _evaluation(spec), "t1", "s1", spec)
        == []
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("other_candidate", "evaluation_report judged candidate c0, not this candidate c1"),
        ("failed_gate", "gates not passed on this evaluation: ['f1_gate']"),
        ("other_train_rows", "was trained on rows t1, but train_set is t2"),
        ("other_test_rows", "evaluation_report scored test rows s1, but test_set is s2"),
        ("failed_quality", "did not pass its blocking data-quality checks"),
        ("failed_split", "failed disjoint_and_stratified"),
        ("changed_spec", "the current spec is"),
        ("no_provenance", "carries no provenance"),
        ("missing_gate", "holds no verdict for ['fairness']"),
    ],
)
def test_each_inconsistency_is_refused_with_what_to_do(spec, case, expected):
    candidate, evaluation, train, test = _candidate(spec), _evaluation(spec), "t1", "s1"
    if case == "other_candidate":
        evaluation = _evaluation(spec, candidate="c0")
    elif case == "failed_gate":
        evaluation = _evaluation(spec, gates_passed=False)
    elif case == "other_train_rows":
        train = "t2"
    elif case == "other_test_rows":
        test = "s2"
    elif case == "failed_quality":
        candidate = _candidate(spec, quality={"passed": False, "failed": ["not_null"]})
    elif case == "failed_split":
        candidate = _candidate(spec, split_check={"passed": False})
    elif case == "changed_spec":
        candidate = _candidate(spec, spec_digest="0" * 16)
    elif case == "missing_gate":
        evaluation = _evaluation(spec, gates=provenance.REQUIRED_GATES[:-1])
    elif case == "no_provenance":
        candidate = Candidate(model=None, provenance={})
    reasons = provenance.registration_refusals(candidate, evaluation, train, test, spec)
    assert reasons, case
    assert any(expected in r for r in reasons), reasons


def test_failed_quality_refuses_downstream_steps(spec):
    with pytest.raises(
        ProvenanceError, match=r"failed its blocking data-quality checks.*values_allowed"
    ):
        provenance.require_quality(_record(spec, passed=False), "features")
    with pytest.raises(ProvenanceError, match="no data-quality verdict"):
        provenance.require_quality({}, "features")


def test_frames_of_different_splits_are_refused(spec):
    a = _record(spec)
    b = _record(spec, split={"train": "t9", "validation": "v9", "test": "s9"})
    assert provenance.require_same_split("x", train_set=a, validation_set=a) == a["split"]
    with pytest.raises(ProvenanceError, match="different splits"):
        provenance.require_same_split("x", train_set=a, test_set=b)


def test_a_changed_spec_is_refused(spec):
    record = _record(spec)
    changed = spec.model_copy(update={"min_rows": 7})
    provenance.require_spec(record, spec, "x", "raw_data")
    with pytest.raises(ProvenanceError, match="spec of fraud_detection changed"):
        provenance.require_spec(record, changed, "x", "raw_data")
    other = spec.model_copy(update={"name": "churn"})
    with pytest.raises(ProvenanceError, match="made for spec 'fraud_detection', not 'churn'"):
        provenance.require_spec(record, other, "x", "raw_data")
