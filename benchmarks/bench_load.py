"""Benchmark: loading the code location.

`dagster definitions validate -m mlassets.definitions` (what `dagster dev`, the daemon and every
run do first) timed as a whole process, and `import mlassets.definitions` alone, each the median
of several fresh processes; and which heavy libraries the import pulls in (none should: they are
imported inside the functions that need them).

The import is timed for three sets of models: the bundled folder (the default, `MLASSETS_SPECS`
unset), one spec (`MLASSETS_SPEC` = the bundled fraud spec, unprefixed names) and a temporary
folder of 10 specs (`MLASSETS_SPECS`; copies of the bundled specs renamed model_01..model_10,
5 fraud-like and 5 churn-like when `mlassets/specs/churn.yaml` exists, else 10 fraud-like). The
data files need not exist: loading never reads data. Per-model cost = (10 specs - 1 spec) / 9.
`validate` is timed for the default and for the 10 specs. The configurations take turns run by
run, so a change in the machine's load falls on all of them alike, and each row also gives the
median CPU time, which varies less than the wall time when other work shares the machine.

Usage: .venv/bin/python -m benchmarks.bench_load [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, quick, secs, table

HEAVY = (
    "sklearn",
    "mlflow",
    "great_expectations",
    "scipy",
    "matplotlib",
    "fairlearn",
    "skops",
    "dagster_mlflow",
)
# The import's wall and CPU time (CPU time varies less when other work shares the cores), then
# the heavy libraries it pulled in, then (outside the timing) how many models loaded and how many
# specs were refused: the figures are of the intended definitions.
PROBE = (
    "import sys, time; t, c = time.perf_counter(), time.process_time(); "
    "import mlassets.definitions; "
    "print(time.perf_counter() - t, time.process_time() - c); "
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules)); "
    "d = mlassets.definitions.defs; "
    "print(sum(1 for j in d.jobs if j.name.endswith('training_job')), "
    "sum(1 for a in d.assets for k in a.keys if k.path[-1] == 'dataset_spec'))"
)
SPECS = ROOT / "mlassets" / "specs"
MANY = 10
TARGET_MANY = 1.5  # seconds: `import mlassets.definitions` with 10 specs


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, float]:
    """(wall seconds, stdout, CPU seconds of the process and its children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, proc.stdout, used


def spec_folder(folder: Path, n: int = MANY) -> str:
    """`n` specs in `folder`, named model_01.. (fraud-like, alternating with churn-like when the
    bundled churn spec exists); returns what they are, for the report."""
    templates = [SPECS / "fraud.yaml"]
    if (SPECS / "churn.yaml").is_file():
        templates.append(SPECS / "churn.yaml")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        name = f"model_{i:02d}"
        text = templates[(i - 1) % len(templates)].read_text()
        text, found = re.subn(r"(?m)^name:.*$", f"name: {name}", text, count=1)
        if not found:
            raise RuntimeError(f"{templates[(i - 1) % len(templates)]} has no top-level `name:`")
        (folder / f"{name}.yaml").write_text(text)
    counts = [len(range(k, n, len(templates))) for k in range(len(templates))]
    return " + ".join(f"{c} x {t.name}" for c, t in zip(counts, templates, strict=True))


def _range(xs: list[float]) -> str:
    return f"{min(xs):.2f}-{max(xs):.2f} s"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3 if quick() else 7)
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster").mkdir()
        (home / "dagster" / "dagster.yaml").write_text(
            (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
        )
        many_made = spec_folder(home / "specs")
        base = {k: v for k, v in os.environ.items() if k not in ("MLASSETS_SPEC", "MLASSETS_SPECS")}
        base |= {"MLASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
        envs = {
            "default": base,  # the bundled folder
            "one": {**base, "MLASSETS_SPEC": str(SPECS / "fraud.yaml")},
            "many": {**base, "MLASSETS_SPECS": str(home / "specs")},
        }
        validate = [
            str(bin_dir / "dagster"),
            "definitions",
            "validate",
            "-m",
            "mlassets.definitions",
        ]
        _timed(validate, envs["default"])  # warm the file cache
        cli: dict[str, list[float]] = {"default": [], "many": []}
        cli_cpu: dict[str, list[float]] = {"default": [], "many": []}
        imports: dict[str, list[float]] = {k: [] for k in envs}
        cpu: dict[str, list[float]] = {k: [] for k in envs}
        heavy: set[str] = set()
        loaded: dict[str, tuple[int, int]] = {}
        for _ in range(args.runs):
            for name in cli:
                wall, _, used = _timed(validate, envs[name])
                cli[name].append(wall)
                cli_cpu[name].append(used)
            for name, env in envs.items():
                _, out, _ = _timed([sys.executable, "-c", PROBE], env)
                lines = out.strip().splitlines()
                wall, used = (float(x) for x in lines[0].split())
                imports[name].append(wall)
                cpu[name].append(used)
                heavy |= {m for m in lines[1].split(",") if m}
                models, refused = (int(x) for x in lines[2].split())
                loaded[name] = (models, refused)
    if loaded["many"] != (MANY, 0) or loaded["one"] != (1, 0):
        raise RuntimeError(f"unexpected definitions (training jobs, refused specs): {loaded}")
    med = statistics.median
    wall_many, wall_one = med(imports["many"]), med(imports["one"])
    per_model = (wall_many - wall_one) / (MANY - 1)
    per_model_cpu = (med(cpu["many"]) - med(cpu["one"])) / (MANY - 1)
    bundled = sorted(p.name for p in SPECS.iterdir() if p.suffix in (".yaml", ".yml"))
    n_bundled = loaded["default"][0]
    folder = f"bundled folder (default; {n_bundled} model{'s' if n_bundled != 1 else ''}: "
    folder += f"{', '.join(bundled)})"
    many = f"`MLASSETS_SPECS` = {MANY} specs ({many_made})"
    validate_cmd = "`dagster definitions validate -m mlassets.definitions` (whole process)"
    import_cmd = "`import mlassets.definitions` (in a fresh interpreter)"
    measured = [
        (f"{validate_cmd}, {folder}", cli["default"], cli_cpu["default"]),
        (f"{validate_cmd}, {many}", cli["many"], cli_cpu["many"]),
        (f"{import_cmd}, {folder}", imports["default"], cpu["default"]),
        (
            f"{import_cmd}, `MLASSETS_SPEC` = the bundled fraud spec (1 model)",
            imports["one"],
            cpu["one"],
        ),
        (f"{import_cmd}, {many}", imports["many"], cpu["many"]),
    ]
    rows = [[what, args.runs, secs(med(w)), _range(w), secs(med(c))] for what, w, c in measured]
    text = table(["code location load", "runs", "median", "range", "CPU time (median)"], rows)
    text += (
        f"\n\nTarget under 3 s: {'met' if med(cli['default']) < 3 else 'MISSED'}. "
        f"Target import with {MANY} specs under {TARGET_MANY} s: "
        f"{'met' if wall_many < TARGET_MANY else 'MISSED'} ({secs(wall_many)}). "
        f"Per model (import, ({MANY} specs - 1 spec) / {MANY - 1}): {per_model * 1000:.0f} ms "
        f"wall, {per_model_cpu * 1000:.0f} ms CPU. "
        f"Heavy libraries imported by loading the definitions: "
        f"{', '.join(sorted(heavy)) or 'none'} (checked: {', '.join(HEAVY)}). "
        "CPU time: of the whole process and its children for `validate`, of the import alone "
        "for `import`; when other work shares the cores it varies less than the wall time "
        "(caches and clock still move it)."
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
