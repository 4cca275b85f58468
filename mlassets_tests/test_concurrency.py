"""Two training runs of one model at once, through the real CLI, against one home.

Dagster's run queue (`tag_concurrency_limits`, `max_concurrent_runs`) only holds runs that go
through the run coordinator (the UI, sensors, schedules); `dagster asset materialize` and
`dagster job execute` run at once in the calling process, and a concurrency pool limits steps,
not whole runs, so two runs can still interleave. So runs never read each other's values
instead: each value is stored under its run (`mlassets.io_managers.ValueStore`) and each step
checks the provenance of what it is given. Here the two runs split differently (seeds 1 and 2):
had one read the other's test set, its test rows would overlap its own training rows.
"""

import subprocess

import pandas as pd
import pytest

from mlassets_tests.conftest import FAST_TRAINING, NAME, CliWorld, cli_world_with_version_1
from mlassets_tests.test_cli import DAGSTER

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(tmp_path) -> CliWorld:
    return cli_world_with_version_1(tmp_path)


def stored(world: CliWorld, asset: str, run_id: str) -> pd.DataFrame:
    """The value `run_id` wrote for `asset`, read straight from the value store."""
    from pathlib import Path

    store = Path(world.env["MLASSETS_HOME"]) / "storage" / NAME
    return pd.read_parquet(store / asset / run_id / "value.parquet")


def test_two_runs_at_once_each_use_only_their_own_values(world):
    from mlassets.ml.data import fingerprint
    from mlassets.ml.registry import PREVIOUS, PRODUCTION, alias_version

    procs = []
    for seed in (1, 2):
        config = world.config(
            f"seed{seed}",
            {
                "candidate_model": {"config": FAST_TRAINING},
                "splits": {"config": {"seed": seed}},
                # judged against production on rows version 1 may have trained on: not the
                # point here, so champion/challenger is relaxed
                "evaluation_report": {"config": {"tolerance": 1.0}},
            },
        )
        procs.append(
            subprocess.Popen(
                [DAGSTER, "job", "execute", "-m", "mlassets.definitions", "-j", "training_job"]
                + ["-c", config],
                cwd=world.root,
                env=world.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    codes = [p.returncode for p in procs]

    client = world.client()
    new = [v for v in client.search_model_versions(f"name='{NAME}'") if str(v.version) != "1"]
    assert len(new) == 2, outputs
    runs_ids = set()
    for mv in new:
        run_id = mv.tags["dagster_run_id"]
        runs_ids.add(run_id)
        train, test = stored(world, "train_set", run_id), stored(world, "test_set", run_id)
        # the version's evaluation used its own run's test rows, disjoint from its training rows
        assert mv.tags["test_fingerprint"] == fingerprint(test)
        assert mv.tags["train_fingerprint"] == fingerprint(train)
        assert not set(train["user_id"]) & set(test["user_id"])
        assert mv.tags["mlassets.status"] == "registered"
    assert len(runs_ids) == 2
    # the two runs really split differently
    a, b = sorted(runs_ids)
    assert set(stored(world, "test_set", a)["user_id"]) != set(
        stored(world, "test_set", b)["user_id"]
    )

    # the registry ends consistent: the run that came second was refused because staging or
    # production had moved since it was evaluated, or it ran late enough to see the first's
    # promotion in its own evaluation
    production = alias_version(client, NAME, PRODUCTION)
    assert production in {str(v.version) for v in new}
    assert 0 in codes, outputs
    for code, out in zip(codes, outputs, strict=True):
        if code != 0:  # refused by the compare-and-set at staging or at production
            assert "production not moved" in out or "staging not moved" in out, out[-3000:]
    assert alias_version(client, NAME, PREVIOUS) in {"1", *(str(v.version) for v in new)} - {
        production
    }
