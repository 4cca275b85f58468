"""`make serve`: `mlflow models serve` for the spec's `production` model, on 127.0.0.1.

Runs MLflow's own scoring server (`/invocations`, `/ping`, `/version`) from this environment
(`--env-manager local`), with this environment's executables first on PATH: MLflow starts the
server as `uvicorn`, which a shell without the venv on PATH does not find. The model takes the
spec's raw columns (see `mlassets.ml.serving`). Replaces this process, so a signal reaches the
server itself.
"""

import argparse
import os
import sys
from pathlib import Path

DEFAULT_PORT = 5001


def command(model_uri: str, host: str, port: int) -> list[str]:
    """The `mlflow models serve` command line, with this environment's `mlflow`."""
    mlflow = str(Path(sys.executable).parent / "mlflow")
    serve = ["models", "serve", "-m", model_uri, "--env-manager", "local"]
    return [mlflow, *serve, "-h", host, "-p", str(port)]


def environment() -> dict[str, str]:
    """This process's environment with the venv's `bin` first on PATH and mlassets' settings."""
    from mlassets import settings

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri()
    if settings.registry_uri():
        env["MLFLOW_REGISTRY_URI"] = settings.registry_uri()
    return env


def main(argv: list[str] | None = None) -> None:
    from mlflow import MlflowClient

    from mlassets import settings
    from mlassets.catalog import catalog
    from mlassets.ml.registry import PRODUCTION, alias_version

    parser = argparse.ArgumentParser(prog="python -m mlassets.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--alias", default=PRODUCTION, help="the alias to serve")
    parser.add_argument(
        "--model", help="the registered model to serve (needed when the specs name several)"
    )
    args = parser.parse_args(argv)
    env = environment()
    names = [m.name for m in catalog(settings.spec_path(), settings.specs_dir()).models]
    name = args.model or (names[0] if len(names) == 1 else None)
    if name not in names:
        parser.error(f"--model: one of {', '.join(names)} (got {args.model!r})")
    tracking = env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking, env.get("MLFLOW_REGISTRY_URI") or tracking)
    version = alias_version(client, name, args.alias)
    if version is None:
        sys.exit(
            f"model {name!r} has no {args.alias!r} version in {env['MLFLOW_TRACKING_URI']}: "
            "run `make demo` first"
        )
    uri = f"models:/{name}@{args.alias}"
    print(f"serving {uri} (version {version}) on http://{args.host}:{args.port}", flush=True)
    cmd = command(uri, args.host, args.port)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
