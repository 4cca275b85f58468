"""`make demo`'s runs: a job launched as the Dagster UI launches it, then run in this process.

`dg launch` and `dagster job execute` make runs without a code-location origin, and the UI shows
those under Runs only: Overview's timeline skips a run with no `repositoryOrigin`, and a job's
Runs tab filters on the tag `.dagster/repository=__repository__@mlassets`, which Dagster writes
from the origin. This command makes the run as the webserver's `launchPipelineExecution` does
(the job's snapshot, execution plan and tags, and the origin of the code location `mlassets`,
the name `dg dev` and workspace.yaml give it), then executes it here, as `dg launch` does: no
daemon, no queue (like `dg launch`, it does not wait for the queue's limits), its log in this
terminal, and Ctrl-C ends the run as canceled.

Usage: python -m mlassets.launch --job fraud_detection_training_job [-c run_config.yaml]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance, DagsterRun

# The code location's name everywhere the UI meets it: [tool.dg.project] code_location_name in
# pyproject.toml (`dg dev`, `make dev`) and workspace.yaml's location_name (deploy/*/start).
LOCATION = "mlassets"
MODULE = "mlassets.definitions"


def launch(instance: DagsterInstance, job_name: str, run_config: dict | None = None) -> DagsterRun:
    """Create a run of `job_name` with the code location's origin and execute it in this
    process; the run as it ended. A config the job refuses raises before any run is made."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.interrupts import capture_interrupts

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=MODULE, working_directory=os.getcwd()
        ),
        location_name=LOCATION,
    )
    run_config = run_config or {}
    location = origin.create_location(instance)
    try:
        (repo,) = location.get_repositories().values()
        if not repo.has_job(job_name):
            raise ValueError(
                f"no job {job_name!r} in code location {LOCATION} (its jobs: "
                f"{', '.join(sorted(j.name for j in repo.get_all_jobs()))})"
            )
        selector = JobSubsetSelector(
            location_name=LOCATION, repository_name=repo.name, job_name=job_name, op_selection=None
        )
        job = location.get_job(selector)
        plan = location.get_execution_plan(job, run_config, None, None, instance=instance)
        # what dagster_graphql's create_valid_pipeline_run (the UI's launch) gives a run
        run = instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=job.tags,
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repo.asset_graph,
        )
        with capture_interrupts():
            execute_run(location.get_reconstructable_job(repo.name, job_name), run, instance)
    finally:
        location.cleanup()
    return instance.get_run_by_id(run.run_id)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: one run; its id, status and, unless it succeeded, why (its
    failed checks or steps, and for failed gates the YAML that would change them) on stdout, the
    run's log on stderr; exit 1 unless it succeeded, so `make demo` stops and shows them."""
    import yaml
    from dagster import DagsterInstance, DagsterInvalidConfigError, DagsterRunStatus

    from mlassets import settings
    from mlassets.summary import gate_advice, run_failures

    parser = argparse.ArgumentParser(prog="python -m mlassets.launch", description=__doc__)
    parser.add_argument("--job", required=True, help="a job of the code location")
    parser.add_argument(
        "-c", "--config", type=Path, help="a run config YAML file (as `dg launch -c`)"
    )
    args = parser.parse_args(argv)
    missing = settings.missing_instance()
    if missing:
        sys.exit(missing)
    run_config = (yaml.safe_load(args.config.read_text()) or {}) if args.config else {}
    with DagsterInstance.get() as instance:
        try:
            run = launch(instance, args.job, run_config)
        except (ValueError, DagsterInvalidConfigError) as e:  # no run was made: say why
            sys.exit(str(e))
        failures = run_failures(instance, run.run_id) if not run.is_success else []
        advice = gate_advice(instance, run.run_id) if not run.is_success else None
    print(f"run {run.run_id} of {run.job_name}: {run.status.value}", flush=True)
    if advice:  # gates refused the model: each one's figure, and the YAML that would change it
        print(advice, flush=True)
    else:
        for failure in failures:
            print(f"  {failure}", flush=True)
    if run.status != DagsterRunStatus.SUCCESS:
        sys.exit(1)


if __name__ == "__main__":
    # process start-up: the homes `make` exports, before Dagster reads them
    from mlassets import settings as _settings

    os.environ.update(_settings.command_defaults())
    main()
