"""A promotion and a rollback of one model at once, through the real CLI, against one home.

`dagster asset materialize --select production_model` (promote staged version 3 over production
2) and `dagster job execute -j rollback_job` (production back to previous, 1) bypass the run
queue, so only the model's lease keeps them apart. Both processes are held at their lease attempt
(`faults.gate`) until both are there, then let go together: a real race for the lease, whose
winner is not chosen. The documented outcome, asserted every time:

- one holds the lease at a time: the loser logs that it waits for the winner's run, and the
  two recorded holds (`mlassets.alias_moves`) do not overlap;
- promotion first: version 3 serves, then the rollback, reading the aliases the promotion left,
  moves production back to 2 (the previous) and marks 3 rolled back;
- rollback first: production goes back to 1, and the promotion, under the lease, sees staging
  moved and is refused ("production not moved");
- either way the rollback succeeds, `previous` is cleared by it, `staging` names production, the
  last recorded move is what the aliases say, and no lease is left behind.
"""

import subprocess
import time
from pathlib import Path

import pytest

from mlassets_tests.conftest import (
    NAME,
    SERIAL_TRAINING,
    CliWorld,
    cli_world_with_version_1,
    materialize_all_in_process,
)
from mlassets_tests.test_cli import DAGSTER

pytestmark = pytest.mark.e2e

STAGED_ONLY = [  # training_job's assets but production_model: version 3 waits at staging
    "raw_data",
    "features",
    "train_set",
    "validation_set",
    "test_set",
    "candidate_model",
    "evaluation_report",
    "registered_model",
    "staging_model",
]


def train(world: CliWorld, seed: int, selection: list[str] | None = None) -> None:
    """One more version, in process: another split (`seed`); champion/challenger relaxed, as
    being better than production is not the point here."""
    ops = {
        "candidate_model": {"config": SERIAL_TRAINING},
        "splits": {"config": {"seed": seed}},
        "evaluation_report": {"config": {"tolerance": 1.0}},
    }
    assert materialize_all_in_process(world.env, ops, selection).success, seed


def start(world: CliWorld, cmd: list[str], gate: Path) -> subprocess.Popen:
    env = {**world.env, "MLASSETS_GATE": f"lease:{gate}"}
    return subprocess.Popen(
        [DAGSTER, *cmd, "-m", "mlassets.definitions"],
        cwd=world.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_at_gate(gate: Path, procs: list[subprocess.Popen], bound_s: float = 180) -> None:
    """Until both processes wait at their lease attempt (bounded; a process that ended first
    fails the test with its output)."""
    deadline = time.monotonic() + bound_s
    while len(list(gate.glob("lease.*.waiting"))) < len(procs):
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{p.args[1:3]} ended before the gate:\n{p.communicate()[0][-3000:]}")
        assert time.monotonic() < deadline, "the processes never reached their lease attempt"
        time.sleep(0.1)


def test_a_promotion_and_a_rollback_at_once_hold_the_lease_one_at_a_time(tmp_path):
    from dagster import DagsterInstance

    from mlassets.ml.lease import LEASE_TAG
    from mlassets.ml.registry import (
        PREVIOUS,
        PRODUCTION,
        PROMOTED_BY_TAG,
        ROLLED_BACK,
        STAGING,
        STATUS_TAG,
        alias_moves,
        aliases,
    )

    started = time.monotonic()
    world = cli_world_with_version_1(tmp_path)
    train(world, seed=2)  # version 2 in production, 1 previous
    train(world, seed=3, selection=STAGED_ONLY)  # version 3 staged, evaluated against 2
    client = world.client()
    assert aliases(client, NAME) == {PREVIOUS: "1", PRODUCTION: "2", STAGING: "3"}
    recorded = len(alias_moves(client.get_registered_model(NAME).tags))
    setup_s = time.monotonic() - started

    gate = tmp_path / "gate"
    gate.mkdir()
    raced = time.monotonic()
    procs = {
        "promote": start(world, ["asset", "materialize", "--select", "production_model"], gate),
        "rollback": start(world, ["job", "execute", "-j", "rollback_job"], gate),
    }
    wait_at_gate(gate, list(procs.values()))
    (gate / "lease.open").touch()  # both go for the lease now
    out = {k: p.communicate(timeout=300)[0] for k, p in procs.items()}
    code = {k: p.returncode for k, p in procs.items()}
    race_s = time.monotonic() - raced

    with DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as instance:
        runs: dict[str, str] = {}
        for run in instance.get_runs():  # newest first: the setup's runs are __ASSET_JOB too
            runs.setdefault(run.job_name, run.run_id)
    promoter, roller = runs["__ASSET_JOB"], runs["rollback_job"]

    assert code["rollback"] == 0, out["rollback"][-3000:]
    model = client.get_registered_model(NAME)
    assert LEASE_TAG not in model.tags  # released by both
    moves = alias_moves(model.tags)[recorded:]
    final = aliases(client, NAME)
    assert moves[-1]["after"] == final
    assert moves[-1]["by"] == roller and moves[-1]["action"] == "rollback"
    assert PREVIOUS not in final and final[STAGING] == final[PRODUCTION]
    if code["promote"] == 0:  # the promotion held the lease first
        assert [m["by"] for m in moves] == [promoter, roller]
        assert moves[0]["after"] == {PREVIOUS: "2", PRODUCTION: "3", STAGING: "3"}
        assert moves[1]["before"] == moves[0]["after"]
        assert final == {PRODUCTION: "2", STAGING: "2"}
        version_3 = client.get_model_version(NAME, "3").tags
        assert version_3[PROMOTED_BY_TAG] == promoter
        assert version_3[STATUS_TAG] == ROLLED_BACK
        assert version_3["mlassets.rolled_back_by"] == roller
        winner, loser = promoter, "rollback"
    else:  # the rollback held it first; the promotion, under the lease, saw staging moved
        assert [m["by"] for m in moves] == [roller]
        assert moves[0]["before"] == {PREVIOUS: "1", PRODUCTION: "2", STAGING: "3"}
        assert final == {PRODUCTION: "1", STAGING: "1"}
        assert "but @staging is version 1" in out["promote"]
        assert "production not moved" in out["promote"]
        assert client.get_model_version(NAME, "2").tags[STATUS_TAG] == ROLLED_BACK
        assert PROMOTED_BY_TAG not in client.get_model_version(NAME, "3").tags
        winner, loser = roller, "promote"
    # the loser waited for the winner (it got there together: the gate), and their holds, from
    # taking the lease to the recorded move, do not overlap
    assert f"waits for run {winner}" in out[loser], out[loser][-3000:]
    if len(moves) == 2:
        assert moves[0]["at"] < moves[1]["held_from"]
    print(f"setup {setup_s:.1f} s, race {race_s:.1f} s, {loser} waited for {winner}")
