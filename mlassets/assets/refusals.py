"""Turn the core's refusals into Dagster failures a person reads without a stack trace."""

import contextlib
from collections.abc import Iterator

from dagster import Failure


@contextlib.contextmanager
def as_failure() -> Iterator[None]:
    """Re-raise a `ProvenanceError` or `RegistryError` as a `Failure` with the same message:
    the message already says what went wrong and what to materialize instead."""
    from mlassets.ml.provenance import ProvenanceError
    from mlassets.ml.registry import RegistryError

    try:
        yield
    except (ProvenanceError, RegistryError) as e:
        raise Failure(description=str(e)) from None
