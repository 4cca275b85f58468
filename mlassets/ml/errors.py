"""Which errors are the project's verdicts on the world, and which are bugs.

A sensor tick or a gate may report a refusal of the spec, of the data, of the registry, or a
service that failed, and go on; anything else is a bug, raised where it happened with its
traceback (a skip that hides a bug repeats every tick and decides nothing). `kind` says which.
"""

from __future__ import annotations

import sys


def kind(exc: BaseException) -> str | None:
    """'spec', 'data', 'registry', 'service', 'service (passing)' or 'storage' for the errors a
    tick may report; None for a bug."""
    from mlassets.ml.data import DataError
    from mlassets.ml.features import UnreadableValues
    from mlassets.ml.provenance import ProvenanceError
    from mlassets.ml.registry import RegistryError
    from mlassets.ml.services import ServiceError, is_transient
    from mlassets.spec import SpecError

    if is_transient(exc):
        return "service (passing)"
    if isinstance(exc, SpecError):
        return "spec"
    if isinstance(exc, DataError | ProvenanceError | UnreadableValues):
        return "data"
    if isinstance(exc, RegistryError):
        return "registry"
    if isinstance(exc, ServiceError) or _library_service_error(exc):
        return "service"
    if isinstance(exc, OSError):  # a folder or file that cannot be read (permissions, gone)
        return "storage"
    return None


# the client libraries' own errors for a store that refused or failed (imported only if loaded:
# an error of a library never imported cannot be this one)
_SERVICE_ERRORS = {
    "mlflow.exceptions": ("MlflowException",),
    "sqlalchemy.exc": ("SQLAlchemyError",),
    "requests.exceptions": ("RequestException",),
    "botocore.exceptions": ("BotoCoreError", "ClientError"),
}


def _library_service_error(exc: BaseException) -> bool:
    for module, names in _SERVICE_ERRORS.items():
        loaded = sys.modules.get(module)
        types = tuple(t for t in (getattr(loaded, n, None) for n in names) if isinstance(t, type))
        if types and isinstance(exc, types):
            return True
    return False
