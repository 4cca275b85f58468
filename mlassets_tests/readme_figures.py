"""The README's demo figures, from a real demo: written by `make readme-figures`, checked by
`make readme-check`, which fails naming every figure that drifted from what the code prints.

It runs what `make demo` runs (both bundled models, 10,000 rows each, seed 42, the default
run config) in a temporary home, through the same commands (`python -m mlassets.synthetic`,
`python -m mlassets.launch`, `python -m mlassets.summary`), then reads the figures the README
quotes: the demo's printout (between `<!-- demo-output -->` markers, run ids and paths
normalised) and the figures its prose cites (each a pattern of `FIGURES` and where the demo
says it). Durations are not figures here: they depend on the machine.

Usage: python -m mlassets_tests.readme_figures [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
JOBS = ("fraud_detection_training_job", "churn_model_training_job")
START, END = "<!-- demo-output -->", "<!-- /demo-output -->"
RUN_ID = re.compile(r"\b[0-9a-f]{8}\b")


def run_demo(home: Path) -> dict:
    """The demo in `home`: its summary and, per model, its evaluation report and the
    candidate's threshold choice (from the run's own materializations)."""
    env = {
        **os.environ,
        "MLASSETS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
    }
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLASSETS_SPEC", "MLASSETS_SPECS"):
        env.pop(key, None)
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((ROOT / "deploy/local/dagster.yaml").read_text())

    def python(*args: str, cwd: Path = home) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True
        )
        if proc.returncode:
            raise RuntimeError(
                f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return proc.stdout

    python(
        "mlassets.synthetic",
        "--rows",
        "10000",
        "--seed",
        "42",
        "--force",
        "--out",
        str(home / "data/transactions.parquet"),
    )
    python(
        "mlassets.synthetic",
        "--table",
        "churn",
        "--rows",
        "10000",
        "--seed",
        "42",
        "--force",
        "--out",
        str(home / "data/churn/customers.parquet"),
    )
    for job in JOBS:
        python("mlassets.launch", "--job", job)
    summary = python("mlassets.summary")
    # from the checkout, where mlassets_tests is importable, on the demo's home
    figures = json.loads(python("mlassets_tests.readme_figures", "--read-home", cwd=ROOT))
    return {"summary": summary, **figures}


def read_home() -> dict:
    """In the demo's home (this process's environment): each model's evaluation report value
    and candidate metadata, from the instance's latest materializations."""
    from dagster import AssetKey, DagsterInstance

    out = {}
    with DagsterInstance.get() as instance:
        for model in ("fraud_detection", "churn_model"):
            meta = {}
            for asset in ("candidate_model", "evaluation_report"):
                event = instance.get_latest_materialization_event(AssetKey([model, asset]))
                meta[asset] = {
                    k: v.value if isinstance(v.value, int | float | str) else str(v.value)
                    for k, v in event.asset_materialization.metadata.items()
                }
            out[model] = meta
    return out


def block(summary: str) -> str:
    """The demo's printout as the README shows it: run ids and the home's path normalised."""
    text = RUN_ID.sub("…", summary)
    text = re.sub(r"from \S*/data/", "from /…/.mlassets/data/", text)
    text = re.sub(r"MLflow: sqlite:///\S*", "MLflow: sqlite:////…/.mlassets/mlflow.db", text)
    return text.strip()


def _fairness(demo: dict, model: str, what: str) -> str:
    """A difference the evaluation report's fairness section states (its first column's)."""
    text = demo[model]["evaluation_report"]["fairness"]
    return re.search(rf"{what} difference ([0-9.]+)", text).group(1)


# Each figure the prose cites: (a pattern of README.md with one group, the figure as the demo
# gives it; words apart by any whitespace, so a reflowed line still matches). A sentence a
# figure leaves is a failure of the check, named, never a silent pass.
FIGURES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "fraud demographic parity": (
        r"demographic\s+parity\s+difference\s+of\s+([0-9.]+)\s+in\s+the\s+demo",
        lambda d: _fairness(d, "fraud_detection", "demographic parity"),
    ),
    "fraud equalized odds": (
        r"In\s+the\s+demo\s+the\s+gated\s+equalized\s+odds\s+difference\s+is\s+([0-9.]+)",
        lambda d: _fairness(d, "fraud_detection", "equalized odds"),
    ),
    "fraud threshold choice": (
        r"`candidate_model`\s+says,\s+for\s+the\s+demo's\s+fraud\s+model:\s+`([^`]+)`",
        lambda d: d["fraud_detection"]["candidate_model"]["threshold_choice"],
    ),
}


def figures(demo: dict) -> dict[str, str]:
    return {name: of(demo) for name, (_, of) in FIGURES.items()}


def drift(text: str, demo: dict) -> list[str]:
    """Every figure of `text` (README.md) that is not what the demo gives, named."""
    problems = []
    shown = (
        text.split(START, 1)[1].split(END, 1)[0].strip().strip("`").strip()
        if START in text
        else None
    )
    if shown != block(demo["summary"]):
        problems.append(f"the demo's printout between {START} markers differs from the demo's")
    for name, (pattern, _) in FIGURES.items():
        found = re.search(pattern, text)
        want = figures(demo)[name]
        if not found:
            problems.append(f"{name}: the sentence /{pattern}/ is gone from README.md")
        elif found.group(1) != want:
            problems.append(f"{name}: README says {found.group(1)!r}, the demo {want!r}")
    return problems


def write(text: str, demo: dict) -> str:
    """`text` with the demo's printout and every cited figure as the demo gives them."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    text = f"{head}{START}\n```\n{block(demo['summary'])}\n```\n{END}{tail}"
    for name, (pattern, _) in FIGURES.items():
        want = figures(demo)[name]
        text = re.sub(pattern, lambda m, w=want: m.group(0).replace(m.group(1), w), text, count=1)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlassets_tests.readme_figures")
    parser.add_argument("--write", action="store_true", help="rewrite README.md's figures")
    parser.add_argument("--read-home", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.read_home:
        print(json.dumps(read_home()))
        return
    with tempfile.TemporaryDirectory(prefix="mlassets-readme-") as tmp:
        demo = run_demo(Path(tmp) / "home")
    text = README.read_text()
    if args.write:
        README.write_text(write(text, demo))
        print(f"wrote the demo's figures into {README}")
        return
    problems = drift(text, demo)
    for p in problems:
        print(f"README.md: {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
