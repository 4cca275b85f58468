"""Turn the core's refusals into Dagster failures a person reads without a stack trace, and decide
which failures of a step that talks to MLflow are retried.

A step that talks to MLflow carries `MLFLOW_RETRY_POLICY` and runs its work inside
`retry_if_transient()`: Dagster retries whatever error reaches it, so every error that another
attempt cannot fix leaves as a `Failure(allow_retries=False)`, and only a service's passing
failure (`mlassets.ml.services.is_transient`) reaches the policy.
"""

import contextlib
import functools
from collections.abc import Callable, Iterator

from dagster import Backoff, DagsterError, Failure, Jitter, RetryPolicy

# The one retry policy of steps that talk to MLflow: 3 more attempts after waits of about 2, 6
# and 14 s (exponential, +/- 2 s of jitter so that parallel steps do not retry in step). MLflow's
# own client retries each request for a few seconds first (`mlassets.settings`); this covers an
# outage of up to about a minute, e.g. a tracking server restarting.
MLFLOW_RETRY_POLICY = RetryPolicy(
    max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


def described(e: BaseException) -> str:
    """`e`'s message with its notes (`add_note`: e.g. what a failed alias restore left behind),
    which `str(e)` leaves out."""
    return "\n".join([str(e), *(str(n) for n in getattr(e, "__notes__", ()))])


@contextlib.contextmanager
def as_failure() -> Iterator[None]:
    """Re-raise a `ProvenanceError` or `RegistryError` as a `Failure` with the same message
    and notes: the message already says what went wrong and what to materialize instead. Never
    retried: a refusal holds however often it is asked again. A busy lease (`LeaseBusy`) is not
    a refusal: it goes on to the step's retry policy (`retry_if_transient`)."""
    from mlassets.ml.bounded import clip
    from mlassets.ml.lease import LeaseBusy
    from mlassets.ml.provenance import ProvenanceError
    from mlassets.ml.registry import RegistryError

    try:
        yield
    except LeaseBusy:
        raise
    except (ProvenanceError, RegistryError) as e:  # a list of batches can make it long
        raise Failure(description=clip(described(e)), allow_retries=False) from None


@contextlib.contextmanager
def retry_if_transient() -> Iterator[None]:
    """Let a transient service error through to the step's retry policy; make every other error
    a `Failure` that is not retried (a wrong parameter, bad data, a refusal, a missing model),
    its message kept and its traceback chained."""
    from mlassets.ml.bounded import clip
    from mlassets.ml.services import is_transient

    try:
        yield
    except Failure as e:
        e.allow_retries = False
        raise
    except DagsterError:
        raise  # Dagster's own errors are never retried by a policy
    except Exception as e:
        if is_transient(e):
            raise
        raise Failure(
            description=clip(f"{type(e).__name__}: {described(e)}"), allow_retries=False
        ) from e


def transient_only(fn: Callable) -> Callable:
    """Run a step's whole body inside `retry_if_transient()`, so that its retry policy never
    repeats a search or a registration for an error raised after the service call (building
    metadata, a bug). Put it under `@asset`; the signature Dagster reads is `fn`'s."""

    @functools.wraps(fn)
    def step(*args, **kwargs):
        with retry_if_transient():
            return fn(*args, **kwargs)

    return step
