"""Profile `postgres` on a real PostgreSQL: the profile's own files, a fresh database per test.

The instance is `deploy/postgres/dagster.yaml` as shipped, pointed at the test's database through
its DAGSTER_PG_* variables; the retraining test starts the profile with `deploy/postgres/start`
(which creates the database, installs that file and runs `dagster dev`: webserver and daemon).
What is asserted is read back through Dagster's instance API and, to be sure it is Postgres that
holds it, straight from the database's tables; no SQLite file may appear in the Dagster home.
"""

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, fraud_frame, write_frame
from mlassets_tests import services
from mlassets_tests.conftest import (
    FAST_TRAINING,
    NAME,
    TEST_ROWS,
    empty_mlflow_store,
    materialize_all_in_process,
    process_env,
)
from mlassets_tests.test_cli import DAGSTER, ROOT, cli_env
from mlassets_tests.test_daemon import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.services]

PROFILE = ROOT / "deploy" / "postgres"
# one fit per fold and no loky pool: the storage is under test here, not the search
TRAINING = {**FAST_TRAINING, "n_jobs": 1}
SENSOR = "drift_sensor"


def pg_env(db: str) -> dict:
    """The profile's connection variables, aimed at the test server's database `db`."""
    return {
        "DAGSTER_PG_HOST": services.PG_HOST,
        "DAGSTER_PG_PORT": str(services.PG_PORT),
        "DAGSTER_PG_USER": services.PG_USER,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": db,
    }


def world(tmp_path: Path, db: str, monkeypatch) -> tuple[dict, Path]:
    """A CLI home whose instance is the profile's dagster.yaml on `db`: (env, training config).

    The variables go into this process too, since the instance the test reads resolves the
    yaml's `env:` entries here."""
    for key, value in pg_env(db).items():
        monkeypatch.setenv(key, value)
    env = cli_env(tmp_path, None)
    assert empty_mlflow_store(tmp_path / "mlflow.db") == env["MLFLOW_TRACKING_URI"]
    home = Path(env["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text((PROFILE / "dagster.yaml").read_text())
    write_frame(
        fraud_frame(TEST_ROWS, seed=7),
        Path(env["MLASSETS_HOME"]) / "data" / "transactions.parquet",
    )
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump({"ops": {"candidate_model": {"config": TRAINING}}}))
    return env, config


def materialize(tmp_path: Path, env: dict, config: Path) -> None:
    """`dagster asset materialize --select '*'` in its own session; whatever it leaves is ended."""
    log = tmp_path / f"materialize-{uuid.uuid4().hex[:6]}.log"
    cmd = [DAGSTER, "asset", "materialize", "-m", "mlassets.definitions", "--select", "*"]
    with services.running([*cmd, "-c", str(config)], log, env=env, cwd=tmp_path) as proc:
        code = proc.wait(timeout=500)
    assert code == 0, services.log_tail(log)


@contextlib.contextmanager
def instance_of(env: dict) -> Iterator[object]:
    """The Dagster instance the CLI used, built from its home's dagster.yaml (the profile's)."""
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        yield instance
    finally:
        instance.dispose()


def pg_rows(db: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows straight from the test database, bypassing Dagster."""
    import psycopg2

    conn = psycopg2.connect(
        host=services.PG_HOST, port=services.PG_PORT, user=services.PG_USER, dbname=db
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def assert_on_postgres(instance, env: dict, db: str, run_ids: set[str]) -> None:
    """Runs, events and schedules live in Postgres, and no SQLite store was made beside them."""
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    in_db = {r[0]: r[1] for r in pg_rows(db, "SELECT run_id, status FROM runs")}
    assert {i: in_db.get(i) for i in run_ids} == dict.fromkeys(run_ids, "SUCCESS")
    assert not sorted(Path(env["DAGSTER_HOME"]).rglob("*.db"))


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (the profile's: `start` execs into its leader)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def registry(env: dict):
    from mlflow import MlflowClient

    return MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])


def test_cli_training_run_is_recorded_in_postgres(tmp_path, monkeypatch):
    """The real CLI on the profile's instance: run, every check result and the promotion are in
    Postgres and read back through the instance API."""
    from dagster import AssetKey, DagsterRunStatus

    from mlassets.definitions import build_defs

    with services.pg_database() as db:
        env, config = world(tmp_path, db, monkeypatch)
        with process_env(env):  # the code location the CLI loads (MLASSETS_SPEC: one model)
            defs = build_defs()
        materialize(tmp_path, env, config)
        with instance_of(env) as instance:
            runs = instance.get_runs()
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS]
            run = runs[0]
            assert_on_postgres(instance, env, db, {run.run_id})

            # every asset check of the graph ran in this run and passed
            keys = defs.resolve_asset_graph().asset_check_keys
            assert len(keys) >= 8
            checks = {k: instance.get_latest_asset_check_evaluation_record(k) for k in keys}
            missing = sorted(k.to_user_string() for k, rec in checks.items() if rec is None)
            assert not missing, f"no check result stored for {missing}"
            for key, rec in checks.items():
                assert rec.run_id == run.run_id, key
                assert rec.status.value == "SUCCEEDED", (
                    key
                )  # the record's status enum is not exported
                assert rec.event.asset_check_evaluation.passed, key

            # production_model: one materialization, by this run, naming the promoted version
            records = instance.fetch_materializations(AssetKey("production_model"), limit=5)
            assert [r.run_id for r in records.records] == [run.run_id]
            metadata = records.records[0].asset_materialization.metadata
            assert metadata["model_version"].value == "1"
            stored = pg_rows(
                db,
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                (run.run_id, "ASSET_MATERIALIZATION"),
            )
            assert stored[0][0] >= len(defs.resolve_all_asset_keys())

        production = registry(env).get_model_version_by_alias(NAME, "production")
        assert (str(production.version), production.tags["dagster_run_id"]) == ("1", run.run_id)


def test_daemon_retrains_on_drift_on_postgres(tmp_path, monkeypatch):
    """`deploy/postgres/start` on a database it creates: the daemon's drift_sensor launches
    training_job for a drifted batch; sensor state, ticks and the run live in Postgres."""
    from dagster import DagsterRunStatus, RunsFilter

    from mlassets.ml.landing import batches_key, list_batches

    db = f"mlassets_test_{uuid.uuid4().hex[:10]}"
    services.require_postgres()
    env, config = world(tmp_path, db, monkeypatch)
    port = services.free_port()
    env.update(
        MLASSETS_UI_PORT=str(port),
        MLASSETS_SENSOR_INTERVAL="3",
        MLASSETS_DRIFT=json.dumps({"min_rows": 5000}),
        MLASSETS_RETRAIN_CONFIG=str(config),
    )
    log = tmp_path / "profile.log"
    try:
        with services.running([str(PROFILE / "start")], log, env=env, cwd=tmp_path) as profile:
            # the webserver answers only once the instance (and so its tables) is up
            services.wait_http(profile, f"http://127.0.0.1:{port}/server_info", log, timeout=240)
            assert f"created database {db}" in log.read_text()
            # version 1, while the daemon runs: `--select '*'` on the profile's instance, in this
            # process (the CLI on Postgres is test_cli_training_run_is_recorded_in_postgres's)
            ops = {"candidate_model": {"config": TRAINING}}
            assert materialize_all_in_process(env, ops).success, services.log_tail(log)
            client = registry(env)
            assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"

            # test_daemon's two batches, clean then drifted, landed at once: one decision
            landing = Path(env["MLASSETS_HOME"]) / "data" / "landing"
            for i, (seed, drift) in enumerate([(31, "none"), (32, "covariate")]):
                batch = fraud_batch(TEST_ROWS, seed, drift, first_id=BATCH_FIRST_ID + i * 100_000)
                write_frame(batch, landing / f"batch_000{i + 1}.parquet")
            with instance_of(env) as instance:
                by_sensor = RunsFilter(tags={"mlassets/trigger": SENSOR})
                launched = wait_for(
                    lambda: instance.get_runs(by_sensor), "drift_sensor to launch", every=0.5
                )
                run = wait_for(
                    lambda: (r := instance.get_run_by_id(launched[0].run_id)).is_finished and r,
                    "the retraining run to finish",
                )
                assert run.status == DagsterRunStatus.SUCCESS, services.log_tail(log)
                assert profile.poll() is None, services.log_tail(log)

                # the run as the sensor asked for it
                assert run.job_name == "training_job"
                assert run.tags["dagster/sensor_name"] == SENSOR
                assert run.tags["mlassets/production_version"] == "1"
                assert "feature_1" in run.tags["mlassets/drifted_features"]

                # the sensor's state: its cursor holds both batches' digests, its ticks the launch
                state = next(
                    s for s in instance.all_instigator_state() if s.instigator_name == SENSOR
                )
                stored = instance.get_instigator_state(
                    state.instigator_origin_id, state.selector_id
                )
                landed = list_batches(str(landing))
                assert json.loads(stored.instigator_data.cursor) == {
                    b.name: b.digest for b in landed
                }
                assert run.tags["dagster/run_key"] == f"retrain-{NAME}-{batches_key(landed)}"
                # every tick (test_daemon's sensor_ticks stops at 50; a slow run may pass that)
                ticks = instance.get_ticks(
                    state.instigator_origin_id, state.selector_id, limit=10_000
                )
                launches = [t for t in ticks if t.status.value == "SUCCESS"]
                assert [t.run_ids for t in launches] == [[run.run_id]]
                assert launches[0].run_keys == [run.tags["dagster/run_key"]]
                assert any("no new batches" in (t.skip_reason or "") for t in ticks)

                runs = instance.get_runs()
                assert len(runs) == 2 and runs[0].run_id == run.run_id
                assert_on_postgres(instance, env, db, {r.run_id for r in runs})
                tick = pg_rows(
                    db, "SELECT status FROM job_ticks WHERE id = %s", (launches[0].tick_id,)
                )
                assert tick == [("SUCCESS",)]

            production = client.get_model_version_by_alias(NAME, "production")
            assert str(production.version) == "2"
            assert production.tags["dagster_run_id"] == run.run_id
            assert production.tags["trigger"] == SENSOR
            assert str(client.get_model_version_by_alias(NAME, "previous").version) == "1"
    finally:
        with contextlib.closing(services._pg_admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    # SIGKILLed members may take a moment to be reaped; then none may be left
    wait_for(lambda: not session_members(profile.pid), "the profile's processes to end", 15, 0.5)
