"""The value store: every asset value as Parquet, skops or JSON, in its own run's directory.

Dagster's default IO manager pickles values, and unpickling runs whatever code the file names; a
value store that anyone can write to must never be unpickled. Here a DataFrame is Parquet, `Rows`
are their frame as Parquet plus their provenance as JSON, a `Candidate` is its model as skops,
loaded against an explicit trusted list, plus its provenance as JSON, a dict is JSON, and a typed
record (`mlassets.ml.records`) is JSON naming its record, read back into its model. Anything else
is refused when written.

Each value lives in `<base_path>/<asset key path>/<run id>/`, and a `LATEST` file beside the run
directories names the run that wrote last. A step reads its upstream value from the run that
produced it for this run (its own run, or the parent of a re-execution), so concurrent runs cannot
read each other's values; only an upstream asset left out of the run is read through `LATEST`.

Built on Dagster's `UPathIOManager`, so `base_path` may be any fsspec URL (s3://, gs://, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from dagster import (
    ConfigurableIOManagerFactory,
    DagsterInvariantViolationError,
    InitResourceContext,
    InputContext,
    MetadataValue,
    OutputContext,
    UPathIOManager,
)
from pydantic import Field

if TYPE_CHECKING:
    from upath import UPath

LATEST = "LATEST"
FRAME = "value.parquet"
MODEL = "model.skops"
PROVENANCE = "provenance.json"
JSON = "value.json"
# The files a run directory may hold, by kind of value; an empty directory holds `None`.
LAYOUTS: dict[frozenset[str], str] = {
    frozenset({FRAME}): "frame",
    frozenset({FRAME, PROVENANCE}): "rows",
    frozenset({MODEL, PROVENANCE}): "candidate",
    frozenset({JSON}): "json",
    frozenset(): "none",
}
# What an output context built without a run id reports as its run id (dagster 1.13).
_NO_RUN_ID = "__EPHEMERAL_RUN_ID"
# Dagster run ids are UUIDs; only directories named like one are ever pruned, so an asset whose
# key extends another's (a/b beside a) never loses its folder to the other's pruning.
_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ValueStoreError(RuntimeError):
    """A value cannot be loaded (missing, pruned, foreign files or untrusted types); says why."""


def _json_default(value: Any) -> Any:
    """JSON for what `json` cannot encode: numpy scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist"):  # numpy scalars (np.float64 -> float) and arrays
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, indent=1)


def _kind(obj: Any) -> str | None:
    """Which layout stores `obj` (None when none does)."""
    import pandas as pd

    from mlassets.ml.provenance import Candidate, Rows
    from mlassets.ml.records import Record

    if obj is None:
        return "none"
    if isinstance(obj, pd.DataFrame):
        return "frame"
    if isinstance(obj, Rows):
        return "rows"
    if isinstance(obj, Candidate):
        return "candidate"
    if isinstance(obj, dict | list):
        return "json"
    if isinstance(obj, Record):
        return "record"
    return None


def _name(fs_path: str) -> str:
    return fs_path.rstrip("/").rsplit("/", 1)[-1]


def _key_parts(context: InputContext | OutputContext, base: UPath) -> list[str]:
    """The asset key as folder names; refuses parts that would leave `base` or nest."""
    parts = list(context.asset_key.path)
    if any(p in ("", ".", "..") or "/" in p for p in parts):
        raise ValueStoreError(
            f"asset key {parts} cannot name a folder under {base}: use key parts without '/' "
            "that are not '.' or '..'"
        )
    return parts


def _asset_name(context: InputContext | OutputContext) -> str:
    return context.asset_key.to_user_string() if context.has_asset_key else context.name


class ValueStoreIOManager(UPathIOManager):
    """Parquet / skops / JSON values under `<base>/<asset key path>/<run id>/`, never pickle."""

    extension = None  # a value is a directory of files, named after the run that wrote it

    def __init__(self, base_path: UPath, keep_runs: int = 10):
        super().__init__(base_path=base_path)
        self.base_path = base_path
        self.keep_runs = keep_runs

    # --- where values live -------------------------------------------------------------------

    def asset_dir(self, context: InputContext | OutputContext) -> UPath:
        """The folder of one asset: its run directories and its `LATEST` pointer."""
        return self.base_path.joinpath(*_key_parts(context, self.base_path))

    def get_asset_relative_path(self, context: InputContext | OutputContext) -> UPath:
        """`<asset key path>/<run id>`: the run that wrote the output, or the one to read."""
        from upath import UPath

        run_id = context.run_id if isinstance(context, OutputContext) else self.source_run(context)
        return UPath(*_key_parts(context, self.base_path), run_id)

    def source_run(self, context: InputContext) -> str:
        """The run whose value of the upstream asset this input reads.

        When the upstream asset was materialized for this run (by this run, or by its parent in
        a re-execution), its output context knows that run. When it was left out of the run (a
        partial selection), Dagster builds an artificial upstream context without a run id, and
        the value is the one `LATEST` names.
        """
        run_id = _upstream_run_id(context)
        if run_id is not None:
            return run_id
        pointer = self.asset_dir(context) / LATEST
        if not self.path_exists(pointer):
            raise ValueStoreError(
                f"{_asset_name(context)} has never been materialized under {self.base_path}: "
                "materialize it first"
            )
        run_id = pointer.read_text().strip()
        if not _RUN_ID.match(run_id):
            raise ValueStoreError(f"{pointer} holds {run_id!r}, not a run id: materialize again")
        return run_id

    # --- writing -------------------------------------------------------------------------------

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        """Refuse what cannot be stored without pickle before anything is written."""
        _refuse_partitions(context)
        if _kind(obj) is None:
            raise TypeError(
                f"{_asset_name(context)}: cannot store a {type(obj).__module__}."
                f"{type(obj).__qualname__} (no pickle: values are stored as Parquet, skops or "
                "JSON): return a DataFrame, Rows, a Candidate, a record or a dict"
            )
        super().handle_output(context, obj)

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        """Write the run directory in full, then point `LATEST` at it and prune old runs.

        The files go to a hidden staging folder that is renamed into place, so a reader never
        sees half a directory (a retried step replaces the directory of its first attempt).
        """
        kind = _kind(obj)
        if kind == "none":  # nothing to write: an empty directory records the value None
            self.make_directory(path)
        else:
            staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
            self.make_directory(staging)
            try:
                _write(kind, obj, staging)
                if self.path_exists(path):
                    self.fs.rm(path.path, recursive=True)
                self._move_into_place(staging, path)
            finally:
                if self.path_exists(staging):
                    self.fs.rm(staging.path, recursive=True)
        if context.has_asset_key:
            self._point_latest(path.parent, path.name)
            self._prune(path.parent, written=path.name)

    def _move_into_place(self, staging: UPath, path: UPath) -> None:
        """A folder on disk is renamed in one step. An object store (s3://, gs://) has no folders
        to rename (fsspec's recursive `mv` there fails copying the folder's own name): each file
        is copied, each copy complete or absent, and `LATEST` moves only after the last one."""
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(self.fs, LocalFileSystem):
            self.fs.mv(staging.path, path.path, recursive=True)
            return
        files = self.fs.find(staging.path)
        self.fs.copy(files, [f"{path.path}/{_name(f)}" for f in files])

    def get_metadata(self, context: OutputContext, obj: Any) -> dict[str, MetadataValue]:
        """The run that wrote the value (the base class adds its `path`; none for None)."""
        return {} if obj is None else {"run_id": MetadataValue.text(context.run_id)}

    def _point_latest(self, asset_dir: UPath, run_id: str) -> None:
        """Replace `LATEST` atomically: write a temporary file, then move it over the pointer."""
        tmp = asset_dir / f".{LATEST}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(run_id)
        self.fs.mv(tmp.path, (asset_dir / LATEST).path)

    def _prune(self, asset_dir: UPath, written: str) -> None:
        """Keep the newest `keep_runs` run directories; never the one written or `LATEST`'s."""
        pointer = asset_dir / LATEST
        latest = pointer.read_text().strip() if self.path_exists(pointer) else written
        entries = self.fs.ls(asset_dir.path, detail=True)
        names = [_name(e["name"]) for e in entries if e["type"] == "directory"]
        runs = [r for r in names if _RUN_ID.match(r)]
        protected = [r for r in dict.fromkeys([written, latest]) if r in runs]
        others = sorted(
            (r for r in runs if r not in protected),
            key=lambda r: (self._written_at(asset_dir / r), r),
            reverse=True,
        )
        for run_id in others[max(self.keep_runs - len(protected), 0) :]:
            with contextlib.suppress(FileNotFoundError):  # a concurrent run pruned it first
                self.fs.rm((asset_dir / run_id).path, recursive=True)

    def _written_at(self, run_dir: UPath) -> float:
        """When a run directory was written (stores without directories: its newest file)."""
        try:
            return self.fs.modified(run_dir.path).timestamp()
        except (OSError, NotImplementedError, KeyError, ValueError):
            files = self.fs.find(run_dir.path)
            return max((self.fs.modified(f).timestamp() for f in files), default=0.0)

    # --- reading -------------------------------------------------------------------------------

    def load_input(self, context: InputContext) -> Any:
        _refuse_partitions(context)
        return super().load_input(context)

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        """Read a run directory; refuse any file this store does not write."""
        name = _asset_name(context)
        if not self.path_exists(path):
            raise ValueStoreError(
                f"{name}: no value at {path} (pruned beyond keep_runs={self.keep_runs}, or "
                f"deleted): materialize {name} again"
            )
        files = frozenset(_name(p) for p in self.fs.ls(path.path, detail=False))
        kind = LAYOUTS.get(files)
        if kind is None:
            foreign = sorted(files - {FRAME, MODEL, PROVENANCE, JSON}) or sorted(files)
            raise ValueStoreError(
                f"{name}: refusing to load {path}: it holds {foreign}, not one of this store's "
                f"layouts ({FRAME}; {FRAME} + {PROVENANCE}; {MODEL} + {PROVENANCE}; {JSON}); "
                "nothing is unpickled"
            )
        if context.has_asset_key:  # op outputs live under the base class's <run>/<step>/<output>
            via = (
                "the LATEST pointer: it was not materialized in this run"
                if _upstream_run_id(context) is None
                else "the run that materialized it for this run"
            )
            _log(
                context, f"loading {name} written by run {path.name} (chosen by {via}) from {path}"
            )
        return _read(kind, context, path)


# --- the three formats -------------------------------------------------------------------------


def _write(kind: str, obj: Any, folder: UPath) -> None:
    if kind == "frame":
        with (folder / FRAME).open("wb") as f:
            obj.to_parquet(f)
    elif kind == "rows":
        with (folder / FRAME).open("wb") as f:
            obj.frame.to_parquet(f)
        # the record names the shape it belongs to: a frame of other rows or columns swapped in
        # under a run directory is refused at load instead of passing for these rows
        shape = {"rows": len(obj.frame), "columns": [str(c) for c in obj.frame.columns]}
        (folder / PROVENANCE).write_text(_dumps({**shape, "provenance": obj.provenance}))
    elif kind == "candidate":
        import skops.io

        data = skops.io.dumps(obj.model)
        (folder / MODEL).write_bytes(data)
        # the record names the exact bytes it belongs to: a model file swapped or rewritten
        # under a run directory is refused at load instead of passing for this candidate
        record = {"model_sha256": hashlib.sha256(data).hexdigest(), "provenance": obj.provenance}
        (folder / PROVENANCE).write_text(_dumps(record))
    elif kind == "record":
        from mlassets.ml.records import dump

        (folder / JSON).write_text(_dumps(dump(obj)))
    else:
        (folder / JSON).write_text(_dumps(obj))


def _read(kind: str, context: InputContext, folder: UPath) -> Any:
    if kind == "none":
        return None
    if kind == "json":
        from mlassets.ml.records import RecordError, is_record, load

        data = json.loads((folder / JSON).read_text())
        if not is_record(data):
            return data
        try:
            return load(data, f"{_asset_name(context)}: {folder / JSON}")
        except RecordError as e:
            raise ValueStoreError(str(e)) from None
    if kind in ("frame", "rows"):
        from mlassets.ml.data import read_parquet
        from mlassets.ml.provenance import KEY, Rows

        # each consumer reads its own copy: read it lean (Arrow's buffers freed as converted)
        with (folder / FRAME).open("rb") as f:
            df = read_parquet(f)
        if kind == "frame":
            if KEY in df.attrs:  # provenance once rode in the frame's pandas attrs
                raise ValueStoreError(
                    f"{_asset_name(context)}: {folder} was written by an older mlassets, before "
                    f"frames kept their provenance beside them: materialize "
                    f"{_asset_name(context)} again"
                )
            return df
        record = json.loads((folder / PROVENANCE).read_text())
        shape = {"rows": len(df), "columns": [str(c) for c in df.columns]}
        if {k: record.get(k) for k in shape} != shape:
            raise ValueStoreError(
                f"{_asset_name(context)}: refusing to load {folder / FRAME}: it holds "
                f"{shape['rows']:,} rows of {len(shape['columns'])} columns, not the "
                f"{record.get('rows')} rows of {len(record.get('columns') or [])} columns "
                f"{PROVENANCE} was written for: materialize {_asset_name(context)} again"
            )
        return Rows(df, record["provenance"])
    import skops.io

    from mlassets.ml.provenance import Candidate
    from mlassets.ml.training import SKOPS_TRUSTED_TYPES

    # Check and load the same bytes, read once: what was checked is what is loaded.
    data = (folder / MODEL).read_bytes()
    untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(SKOPS_TRUSTED_TYPES))
    if untrusted:
        raise ValueStoreError(
            f"{_asset_name(context)}: refusing to load {folder / MODEL}: it holds types outside "
            f"the trusted list (mlassets.ml.training.SKOPS_TRUSTED_TYPES): {untrusted}"
        )
    record = json.loads((folder / PROVENANCE).read_text())
    if "model_sha256" not in record:
        raise ValueStoreError(
            f"{_asset_name(context)}: {folder} was written by an older mlassets, before values "
            f"recorded their checksum: materialize {_asset_name(context)} again"
        )
    if record["model_sha256"] != hashlib.sha256(data).hexdigest():
        raise ValueStoreError(
            f"{_asset_name(context)}: refusing to load {folder / MODEL}: its bytes are not the "
            f"ones {PROVENANCE} was written for: materialize {_asset_name(context)} again"
        )
    model = skops.io.loads(data, trusted=SKOPS_TRUSTED_TYPES)
    return Candidate(model=model, provenance=record["provenance"])


# --- Dagster context helpers -------------------------------------------------------------------


def _upstream_run_id(context: InputContext) -> str | None:
    """The run that produced the upstream output, or None when the upstream was not in the run.

    For an upstream asset outside the run, Dagster (`FromLoadableAsset.load_input_object`) builds
    an artificial output context with `build_output_context` and no run id, which in 1.13 reads
    back as the placeholder `__EPHEMERAL_RUN_ID` (an OutputContext built without one raises).
    """
    upstream = context.upstream_output
    if upstream is None:
        return None
    try:
        run_id = upstream.run_id
    except DagsterInvariantViolationError:
        return None
    return None if run_id == _NO_RUN_ID else run_id


def _refuse_partitions(context: InputContext | OutputContext) -> None:
    if context.has_asset_key and context.has_asset_partitions:
        raise ValueStoreError(
            f"{_asset_name(context)} is partitioned; the value store holds unpartitioned assets only"
        )


def _log(context: InputContext, message: str) -> None:
    with contextlib.suppress(DagsterInvariantViolationError):  # a context without a log manager
        context.log.info(message)


class ValueStore(ConfigurableIOManagerFactory):
    """The project's IO manager: pickle-free values, one directory per run, `LATEST` per asset.

    `base_path` is a local folder or any fsspec URL; `keep_runs` bounds the run directories kept
    per asset (the newest, plus always the one `LATEST` names).
    """

    base_path: str = Field(description="Folder or fsspec URL that holds every asset's values.")
    keep_runs: int = Field(
        default=10, ge=1, description="Run directories kept per asset (oldest pruned first)."
    )

    def create_io_manager(self, context: InitResourceContext) -> ValueStoreIOManager:
        from upath import UPath

        return ValueStoreIOManager(base_path=UPath(self.base_path), keep_runs=self.keep_runs)
