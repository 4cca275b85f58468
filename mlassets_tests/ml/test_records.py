"""Typed records (issue 24.6): what a step hands the next is a model with a schema version, and a
stored record that is not one is refused where it is read, naming the file and the field."""

import pytest

from mlassets.ml import records
from mlassets.ml.records import Promotion, RecordError, Registration, Staged

pytestmark = pytest.mark.unit

REGISTRATION = Registration(
    name="fraud_detection",
    version="3",
    run_id="r1",
    model_uri="models:/m-1",
    candidate="abc",
    test_rows="def",
    evaluated_against="2",
)


@pytest.mark.parametrize(
    "record",
    [
        REGISTRATION,
        Staged(name="n", version="3", candidate="abc", evaluated_against=None),
        Promotion(name="n", production="3", previous="2"),
    ],
)
def test_a_record_round_trips_through_its_json(record):
    import json

    data = json.loads(json.dumps(records.dump(record)))
    assert data[records.RECORD_KEY] == record.KIND and data["schema_version"] == 1
    assert records.load(data, "value.json") == record


def test_a_record_is_frozen_and_takes_no_stray_field():
    with pytest.raises(ValueError, match="frozen"):
        REGISTRATION.version = "4"
    with pytest.raises(ValueError, match="gates"):
        Registration(**REGISTRATION.model_dump(), gates={})


def test_a_stored_record_that_is_not_one_is_refused_by_name():
    data = records.dump(REGISTRATION)
    with pytest.raises(RecordError, match=r"store/value.json: not a valid registration record: "):
        records.load({**data, "version": None}, "store/value.json")
    missing = {k: v for k, v in data.items() if k != "test_rows"}
    with pytest.raises(RecordError, match="test_rows: Field required"):
        records.load(missing, "store/value.json")
    with pytest.raises(RecordError, match="schema version 2, this mlassets reads version 1"):
        records.load({**data, "schema_version": 2}, "store/value.json")
    with pytest.raises(RecordError, match="unknown record 'verdict'"):
        records.load({**data, records.RECORD_KEY: "verdict"}, "store/value.json")


def test_an_evaluation_report_round_trips_and_a_tampered_verdict_is_refused_by_its_path():
    import json

    from mlassets_tests.reports import evaluation_report

    report = evaluation_report(gates={"f1_gate": True, "fairness": False})
    data = json.loads(json.dumps(records.dump(report)))
    assert data[records.RECORD_KEY] == "evaluation"
    assert records.load(data, "value.json") == report
    assert report.failed == ["fairness"] and report.gate("f1_gate").passed
    assert report.gate("beats_production") is None  # absent: the check and registration fail
    data["gates"][0]["passed"] = "perhaps"
    with pytest.raises(RecordError, match=r"not a valid evaluation record: gates\.0\.passed"):
        records.load(data, "store/value.json")
    data["gates"][0] = {"name": "f1_gate", "passed": True}  # a verdict with no description
    with pytest.raises(RecordError, match=r"gates\.0\.description: Field required"):
        records.load(data, "store/value.json")
