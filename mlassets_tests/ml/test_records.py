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
