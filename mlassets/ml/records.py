"""Typed records one step hands the next: a registered version, the staged one, the promotion.

Each is a frozen pydantic model with a schema version, written as JSON by the value store with
its record name beside it (`dump`) and read back into the same model (`load`): a field missing,
misspelt or of the wrong type fails where it is read, naming it, instead of a `KeyError` three
steps later; a record written by another schema version is refused and says to materialize again.
"""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

SCHEMA_VERSION = 1
RECORD_KEY = "mlassets.record"  # the record's name in its JSON (plain dicts never carry it)


class RecordError(ValueError):
    """A stored record cannot be read as the record it names."""


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION
    KIND: ClassVar[str]


class Registration(Record):
    """`registered_model`: the version registered from the candidate `evaluation_report` judged
    (`steps.register_candidate`); what staging checks its inputs against."""

    KIND: ClassVar[str] = "registration"
    name: str
    version: str
    run_id: str
    model_uri: str
    candidate: str  # the candidate's digest
    test_rows: str  # the fingerprint of the test rows it was evaluated on
    evaluated_against: str | None  # the production version it was compared with (None: none)


class Staged(Record):
    """`staging_model`: the version `staging` names once it loaded and predicted like the
    candidate (`steps.stage`); what promotion checks the aliases against."""

    KIND: ClassVar[str] = "staged"
    name: str
    version: str
    candidate: str
    evaluated_against: str | None


class Promotion(Record):
    """`production_model`: the version now `production` and the one it replaced."""

    KIND: ClassVar[str] = "promotion"
    name: str
    production: str
    previous: str | None


RECORDS: dict[str, type[Record]] = {cls.KIND: cls for cls in (Registration, Staged, Promotion)}


def dump(record: Record) -> dict[str, Any]:
    """The record as JSON-ready data, named so that `load` knows which model reads it."""
    return {RECORD_KEY: record.KIND, **record.model_dump(mode="json")}


def is_record(data: Any) -> bool:
    return isinstance(data, dict) and RECORD_KEY in data


def load(data: dict[str, Any], where: str) -> Record:
    """The record `data` names, validated; `where` (a file) is named in every refusal."""
    fields = dict(data)
    kind = fields.pop(RECORD_KEY)
    cls = RECORDS.get(kind)
    if cls is None:
        raise RecordError(f"{where}: unknown record {kind!r} (known: {', '.join(RECORDS)})")
    version = fields.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{where}: a {kind} record of schema version {version}, this mlassets reads "
            f"version {SCHEMA_VERSION}: materialize it again"
        )
    try:
        return cls.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or kind}: {err['msg']}"
            for err in e.errors()[:5]
        )
        raise RecordError(f"{where}: not a valid {kind} record: {problems}") from None
