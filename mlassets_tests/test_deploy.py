"""The deployment profiles in `deploy/`: each is complete and its instance config is one Dagster
accepts; the `k8s` profile (image, Helm values, start script) is checked as far as a machine
without a Docker engine, helm or a cluster allows.

What is checked here: the image's command serves the definitions (the chart's readiness probe
answers), the pods' environment loads them with the `k8s_job` executor, the Helm values name only
settings the chart knows and agree with the image, the profile and the project, the build context
holds the package and nothing local, and `start` stops before doing anything when its tools are
missing. What is not: building the image, installing the chart, K8sRunLauncher and
k8s_job_executor against a cluster.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlassets_tests.services import HOST, free_port, log_tail, port_open, running

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
PROFILES = sorted(p.name for p in DEPLOY.iterdir() if p.is_dir()) if DEPLOY.is_dir() else []
WITH_INSTANCE = [p for p in PROFILES if (DEPLOY / p / "dagster.yaml").is_file()]
STARTUP_S = 180.0  # the code server imports the definitions; the CPU may be shared
ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# The chart runs `args: [dagster, code-server, start, -h, 0.0.0.0, -p, <port>, *codeServerArgs]`
# (helm/dagster/charts/dagster-user-deployments/templates/deployment-user.yaml).
CHART_CODE_SERVER = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p"]

# Key paths of Dagster's Helm chart that deploy/k8s/values.yaml may use, read from the chart in
# dagster-io/dagster: helm/dagster/values.yaml and values.schema.json at commit 835892b4, and
# helm/dagster/schema/schema/charts/dagster/subschema/run_launcher.py at 969d7265 (runK8sConfig,
# resources); the chart is versioned with dagster and start pins 1.13.27. The chart's schema
# lets unknown keys through in several places (a user deployment, for one), and helm then ignores
# them silently: hence this list.
# Each entry is a dotted path; `[]` stands for a list item. A path ending in `.*` names a free-form
# Kubernetes object or map (env maps, resources, probes, volumes, raw run config): anything below
# it is the API server's business, not the chart's. Only the sections we touch are listed in
# full; a key outside this list fails the test (a typo is found before `helm install` is run).
CHART_KEYS = {
    # top level
    "nameOverride", "fullnameOverride", "rbacEnabled", "imagePullSecrets.*",
    "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "additionalInstanceConfig.*",
    "extraManifests.*", "pythonLogs.*", "busybox.*", "migrate.enabled", "telemetry.enabled",
    "serviceAccount.create", "serviceAccount.name", "serviceAccount.annotations.*",
    "global.postgresqlSecretName", "global.dagsterHome", "global.serviceAccountName",
    "global.celeryConfigSecretName",
    # dagsterWebserver (the chart's image; we leave it at the defaults)
    *(f"dagsterWebserver.{k}" for k in (
        "replicaCount", "image.repository", "image.tag", "image.pullPolicy", "nameOverride",
        "pathPrefix", "service.type", "service.port", "service.annotations.*", "workspace.*",
        "env.*", "envConfigMaps.*", "envSecrets.*", "deploymentLabels.*", "labels.*",
        "nodeSelector.*", "affinity.*", "tolerations.*", "podSecurityContext.*",
        "securityContext.*", "resources.*", "readinessProbe.*", "livenessProbe.*",
        "startupProbe.*", "annotations.*", "enableReadOnly", "dbStatementTimeout",
        "dbPoolRecycle", "logLevel", "schedulerName", "volumeMounts.*", "volumes.*",
    )),
    # dagster-user-deployments (schema: UserDeployments, UserDeployment)
    "dagster-user-deployments.enabled", "dagster-user-deployments.enableSubchart",
    "dagster-user-deployments.imagePullSecrets.*",
    *(f"dagster-user-deployments.deployments[].{k}" for k in (
        "name", "image.repository", "image.tag", "image.pullPolicy", "dagsterApiGrpcArgs.*",
        "codeServerArgs.*", "includeConfigInLaunchedRuns.enabled", "port", "env.*",
        "envConfigMaps.*", "envSecrets.*", "annotations.*", "nodeSelector.*", "affinity.*",
        "tolerations.*", "podSecurityContext.*", "securityContext.*", "resources.*",
        "livenessProbe.*", "readinessProbe.*", "startupProbe.*", "labels.*", "volumeMounts.*",
        "volumes.*", "schedulerName", "service.annotations.*",
    )),
    # postgresql (schema: PostgreSQL)
    *(f"postgresql.{k}" for k in (
        "enabled", "image.repository", "image.tag", "image.pullPolicy", "postgresqlHost",
        "postgresqlUsername", "postgresqlPassword", "postgresqlDatabase", "postgresqlParams.*",
        "postgresqlScheme", "service.port",
    )),
    # runLauncher (schema: RunLauncher, K8sRunLauncherConfig, RunK8sConfig)
    "runLauncher.type",
    *(f"runLauncher.config.k8sRunLauncher.{k}" for k in (
        "image.repository", "image.tag", "image.pullPolicy", "imagePullPolicy", "jobNamespace",
        "loadInclusterConfig", "kubeconfigFile", "envConfigMaps.*", "envSecrets.*", "envVars.*",
        "volumeMounts.*", "volumes.*", "labels.*", "failPodOnRunFailure", "resources.*",
        "schedulerName", "securityContext.*", "runK8sConfig.containerConfig.*",
        "runK8sConfig.podSpecConfig.*", "runK8sConfig.podTemplateSpecMetadata.*",
        "runK8sConfig.jobSpecConfig.*", "runK8sConfig.jobMetadata.*",
    )),
    # dagsterDaemon (schema: Daemon, RunCoordinator, QueuedRunCoordinatorConfig)
    *(f"dagsterDaemon.{k}" for k in (
        "enabled", "image.repository", "image.tag", "image.pullPolicy", "heartbeatTolerance",
        "runCoordinator.enabled", "runCoordinator.type",
        "runCoordinator.config.queuedRunCoordinator.maxConcurrentRuns",
        "runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits.*",
        "runCoordinator.config.queuedRunCoordinator.dequeueIntervalSeconds",
        "runCoordinator.config.queuedRunCoordinator.dequeueUseThreads",
        "runCoordinator.config.queuedRunCoordinator.dequeueNumWorkers",
        "runMonitoring.*", "runRetries.*", "sensors.*", "schedules.*", "env.*",
        "envConfigMaps.*", "envSecrets.*", "deploymentLabels.*", "labels.*", "volumes.*",
        "volumeMounts.*", "annotations.*", "nodeSelector.*", "affinity.*", "tolerations.*",
        "podSecurityContext.*", "securityContext.*", "resources.*", "livenessProbe.*",
        "readinessProbe.*", "startupProbe.*", "schedulerName",
    )),
    "computeLogManager.type", "computeLogManager.config.*", "retention.*", "scheduler.type",
    "scheduler.config.*", "ingress.*",
}  # fmt: skip
# Values the chart's schema restricts to a set (enums in values.schema.json).
CHART_ENUMS = {
    "runLauncher.type": {"K8sRunLauncher", "CeleryK8sRunLauncher", "CustomRunLauncher"},
    "dagsterDaemon.runCoordinator.type": {"QueuedRunCoordinator", "CustomRunCoordinator"},
    "dagster-user-deployments.deployments[].image.pullPolicy": {"Always", "IfNotPresent", "Never"},
    "runLauncher.config.k8sRunLauncher.imagePullPolicy": {"Always", "IfNotPresent", "Never"},
}


# ---------------------------------------------------------------------------------------------
# helpers


def dockerfile(path: Path = K8S / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, `\\` continuations joined, as Docker
    reads them (enough for a Dockerfile we write ourselves; no heredocs, no escape directive)."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The image's ENV (`KEY=value` form)."""
    env = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            for item in args.split():
                key, _, value = item.partition("=")
                env[key] = value
    return env


def image_command(instructions: list[tuple[str, str]]) -> list[str]:
    """The image's CMD in exec form (JSON); a shell form would not survive the chart's args."""
    (cmd,) = [json.loads(args) for keyword, args in instructions if keyword == "CMD"]
    return cmd


def sourced(profile_env: Path) -> dict[str, str]:
    """What `set -a; . profile.env` exports, read back from bash itself (so it is sourceable)."""

    def exported(path: str) -> dict[str, str]:
        out = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", 'set -a; . "$1"; env -0', "_", path],
            env={"PATH": os.environ["PATH"]},
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)

    base = exported("/dev/null")
    return {k: v for k, v in exported(str(profile_env)).items() if base.get(k) != v}


def key_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every leaf path of a values document (`a.b`, `list[].key`), empty maps and lists too."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from key_paths(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        for item in value:
            yield from key_paths(item, f"{prefix}[]")
    else:
        yield prefix


def unknown_keys(values: dict) -> list[str]:
    """The key paths of `values` the chart does not know (see CHART_KEYS)."""
    free = [k[: -len(".*")] for k in CHART_KEYS if k.endswith(".*")]
    return [
        path
        for path in key_paths(values)
        if path not in CHART_KEYS
        and not any(path == f or path.startswith((f + ".", f + "[]")) for f in free)
    ]


def leaf(values: dict, path: str) -> list[Any]:
    """Every value at `path` (one per list item where the path crosses `[]`)."""
    found = [values]
    for part in path.split("."):
        name, is_list = part.removesuffix("[]"), part.endswith("[]")
        found = [f[name] for f in found if isinstance(f, dict) and name in f]
        if is_list:
            found = [item for f in found for item in f]
    return found


def values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


def deployment() -> dict:
    (only,) = values()["dagster-user-deployments"]["deployments"]
    return only


def pod_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the code-server pod on this machine: ours, then the image's ENV, then
    the chart's env map; the paths that exist only in the pod point into `tmp_path` (the spec at
    the file its ConfigMap is made from)."""
    profile = sourced(K8S / "profile.env")
    env = {**os.environ, **dockerfile_env(dockerfile()), **deployment()["env"]}
    for credential in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(credential, None)  # nothing may need the object store to load the definitions
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    env["MLASSETS_HOME"] = str(tmp_path / "mlassets")
    env["MLASSETS_SPEC"] = str(REPO / profile["MLASSETS_SPEC_FILE"])
    env.pop("MLASSETS_SPECS", None)  # the pod's one spec: one model under unprefixed names
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    Path(env["DAGSTER_HOME"]).mkdir()
    return env


# ---------------------------------------------------------------------------------------------
# every profile


def test_the_k8s_profile_is_one_of_the_profiles() -> None:
    assert "k8s" in PROFILES, f"deploy/ holds {PROFILES}"


@pytest.mark.parametrize("profile", PROFILES)
def test_a_profile_has_a_sourceable_profile_env_and_an_executable_start(profile: str) -> None:
    folder = DEPLOY / profile
    env_file, start = folder / "profile.env", folder / "start"
    assert env_file.is_file(), f"{env_file} is missing"
    lines = [
        line.strip()
        for line in env_file.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert all(ENV_LINE.match(line) for line in lines), (
        f"{env_file}: not a plain KEY=value line: {[x for x in lines if not ENV_LINE.match(x)]}"
    )
    exported = sourced(env_file)  # bash sources it without an error
    for line in lines:  # ... and exports each variable, with the value the file gives it
        key, value = line.split("=", 1)
        assert key in exported, f"{env_file}: {key} is not exported by `set -a; . profile.env`"
        if "$" not in value and not value.startswith(("'", '"')):
            assert exported[key] == value, f"{env_file}: {key}"

    assert start.is_file(), f"{start} is missing"
    assert os.access(start, os.X_OK), f"{start} is not executable (chmod +x)"
    assert start.read_text().startswith("#!/usr/bin/env bash"), f"{start}: not a bash script"
    syntax = subprocess.run(["bash", "-n", str(start)], capture_output=True, text=True)
    assert syntax.returncode == 0, f"{start}: {syntax.stderr}"


@pytest.mark.parametrize("profile", WITH_INSTANCE)
def test_a_profile_dagster_yaml_is_accepted_by_dagster(profile: str, tmp_path: Path) -> None:
    """The instance schema accepts the file, and every class it names imports and accepts its
    config; where every class is Dagster's own (no service to reach), the instance is built."""
    from dagster import DagsterInstance
    from dagster._config import resolve_to_config_type, validate_config
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes.config_class import ConfigurableClassData

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / profile / "dagster.yaml", home / "dagster.yaml")
    ref = InstanceRef.from_dir(str(home))  # raises DagsterInvalidConfigError naming the key

    classes = {
        name: data
        for name, data in ref._asdict().items()
        if isinstance(data, ConfigurableClassData)
    }
    for name, data in classes.items():
        module = __import__(data.module_name, fromlist=[data.class_name])
        cls = getattr(module, data.class_name)
        result = validate_config(resolve_to_config_type(cls.config_type()), data.config_dict)
        assert result.success, (
            f"deploy/{profile}/dagster.yaml: {name} ({data.module_name}.{data.class_name}): "
            + "; ".join(e.message for e in result.errors)
        )

    if all(
        d.module_name.startswith("dagster.") or d.module_name == "dagster" for d in classes.values()
    ):
        instance = DagsterInstance.from_ref(ref)
        try:
            assert instance.get_runs() == []
        finally:
            instance.dispose()


# ---------------------------------------------------------------------------------------------
# the k8s profile


def test_k8s_image_is_slim_python_311_non_root_with_the_pinned_engines() -> None:
    instructions = dockerfile()
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    # The chart sets the container's args; an ENTRYPOINT would be prepended to them.
    assert "ENTRYPOINT" not in keywords
    users = [args for k, args in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    env = dockerfile_env(instructions)
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["GX_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    installs = [a for k, a in instructions if k == "RUN" and "pip install" in a]
    assert installs and all("-c constraints.txt" in a for a in installs)
    (extras,) = re.findall(r"\.\[([a-z0-9,]+)\]", " ".join(installs))
    assert {"postgres", "k8s"} <= set(extras.split(",")) and "dev" not in extras.split(",")


def test_dockerignore_keeps_the_build_context_to_the_package() -> None:
    """The context `docker build -f deploy/k8s/Dockerfile .` sends, as Docker's own client
    (docker-py) computes it from .dockerignore: what the Dockerfile copies, nothing local."""
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = set(exclude_paths(str(REPO), patterns, dockerfile="deploy/k8s/Dockerfile"))
    copied = [
        src
        for keyword, args in dockerfile()
        if keyword == "COPY"
        for src in args.split()[:-1]
        if not src.startswith("--")
    ]
    for src in copied:
        assert src in context, f"COPY {src}: not in the build context"
    assert "mlassets/definitions.py" in context and "mlassets/specs/fraud.yaml" in context
    local = [
        p
        for p in context
        if p.split("/")[0] in {".venv", ".git", ".mlassets", "mlassets_tests", "benchmarks"}
        or p.endswith((".parquet", ".db", ".pyc"))
        or "__pycache__" in p
    ]
    assert local == [], f"local files in the build context: {sorted(local)[:10]}"


@pytest.mark.services
@pytest.mark.e2e
def test_k8s_image_command_serves_the_definitions(tmp_path: Path) -> None:
    """The image's CMD, run here on 127.0.0.1 and a free port (the pod's 0.0.0.0:3030), answers
    the chart's readiness probe (`dagster api grpc-health-check`) and serves the jobs."""
    port = free_port()
    cmd = image_command(dockerfile())
    assert cmd[:6] == CHART_CODE_SERVER and cmd[6] == "3030"
    local = [HOST if a == "0.0.0.0" else str(port) if a == "3030" else a for a in cmd]
    local[0] = str(BIN / "dagster")
    env = pod_env(tmp_path)  # k8s_job executor, values on s3://, MLflow over HTTP: as in the pod
    probe = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", HOST, "-p", str(port)]
    log = tmp_path / "code-server.log"
    with running(local, log, env=env, cwd=tmp_path) as proc:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the image's command exited with {proc.returncode}:\n{log_tail(log)}")
            answer = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
            if answer.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"no SERVING within {STARTUP_S:.0f}s: {answer.stderr}\n{log_tail(log)}")
            time.sleep(0.5)
        assert "successful" in answer.stdout
        jobs = subprocess.run(
            [str(BIN / "dagster"), "job", "list", "--grpc-host", HOST, "--grpc-port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert jobs.returncode == 0, jobs.stderr
        for job in ("training_job", "monitoring_job", "rollback_job"):
            assert f"Job: {job}" in jobs.stdout, jobs.stdout
    assert proc.returncode is not None and not port_open(port), "the code server outlived the test"


def test_k8s_values_name_only_settings_the_chart_knows() -> None:
    doc = values()
    assert unknown_keys(doc) == []
    for path, allowed in CHART_ENUMS.items():
        for value in leaf(doc, path):
            assert value in allowed, f"{path}: {value!r} is not one of {sorted(allowed)}"
    # The chart's schema types `env` as a map of strings: YAML's bare true or 5000 would fail.
    assert all(isinstance(v, str) for v in deployment()["env"].values())

    # The check itself: a misspelt key, a key in the wrong place and an unknown section fail it.
    typo = yaml.safe_load((K8S / "values.yaml").read_text())
    typo["runLauncher"]["config"]["k8sRunLauncher"]["failPodOnRunFailur"] = True
    typo["dagster-user-deployments"]["deployments"][0]["codeServerArg"] = ["-m", "x"]
    typo["dagsterDeamon"] = {"enabled": True}
    assert set(unknown_keys(typo)) == {
        "dagsterDeamon.enabled",
        "dagster-user-deployments.deployments[].codeServerArg",
        "runLauncher.config.k8sRunLauncher.failPodOnRunFailur",
    }


def test_k8s_values_agree_with_the_image_the_profile_and_the_project() -> None:
    doc, dep = values(), deployment()
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    profile = sourced(K8S / "profile.env")
    instructions = dockerfile()

    # The pod runs the image's own command: the chart's prefix, the port, then codeServerArgs.
    assert [*CHART_CODE_SERVER, str(dep["port"]), *dep["codeServerArgs"]] == image_command(
        instructions
    )
    assert ("EXPOSE", str(dep["port"])) in instructions
    # ... loading the module pyproject names, under the code location's name.
    args = dep["codeServerArgs"]
    assert args[args.index("-m") + 1] == tool["module_name"]
    assert dep["name"] == tool["code_location_name"]
    assert dep["image"]["repository"] == profile["MLASSETS_IMAGE"]
    assert str(dep["image"]["tag"]) == profile["MLASSETS_IMAGE_TAG"]
    assert profile["DAGSTER_CHART_VERSION"] == _installed("dagster")

    # Runs and steps: K8sRunLauncher, each step a Job, values in the object store.
    assert doc["runLauncher"]["type"] == "K8sRunLauncher"
    assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
    assert dep["env"]["MLASSETS_EXECUTOR"] == profile["MLASSETS_EXECUTOR"] == "k8s_job"
    assert dep["env"]["MLASSETS_STORAGE"].startswith("s3://")
    assert dep["env"]["MLFLOW_TRACKING_URI"].startswith(("http://", "https://"))
    for key in ("MLFLOW_DISABLE_TELEMETRY", "GX_ANALYTICS_ENABLED"):
        assert dep["env"][key] == profile[key]
    assert dep["env"]["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert doc["telemetry"]["enabled"] is False

    # The objects `start` creates are the ones the values refer to.
    assert doc["global"]["postgresqlSecretName"] == profile["DAGSTER_PG_SECRET"]
    assert doc["generatePostgresqlPasswordSecret"] is False
    assert {"name": profile["MLASSETS_CREDENTIALS_SECRET"]} in dep["envSecrets"]
    (volume,) = [v for v in dep["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == profile["MLASSETS_SPEC_CONFIGMAP"]
    (mount,) = [m for m in dep["volumeMounts"] if m["name"] == volume["name"]]
    assert dep["env"]["MLASSETS_SPEC"] == f"{mount['mountPath']}/spec.yaml"
    start = (K8S / "start").read_text()
    assert "--from-file=spec.yaml=" in start and "postgresql-password=" in start

    # External PostgreSQL through psycopg2 (SQLAlchemy 2.1 maps `postgresql://` to psycopg 3).
    assert doc["postgresql"]["enabled"] is False
    assert doc["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    coordinator = doc["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    # The pod runs as the image's user.
    user = [a for k, a in instructions if k == "USER"][-1]
    assert str(dep["podSecurityContext"]["runAsUser"]) == user
    assert dep["podSecurityContext"]["runAsNonRoot"] is True


def test_k8s_spec_is_the_bundled_spec_with_its_data_in_the_object_store() -> None:
    from mlassets.spec import DEFAULT_SPEC, load_spec

    profile = sourced(K8S / "profile.env")
    ours, bundled = load_spec(REPO / profile["MLASSETS_SPEC_FILE"]), load_spec(DEFAULT_SPEC)
    assert all(url.startswith("s3://") for url in (ours.source, ours.landing, ours.labels))
    assert ours.resolve(ours.source) == ours.source  # URLs stay: no pod-local path
    assert ours.allow_external  # a URL source is refused unless the spec opts in
    moved = {"source", "landing", "labels", "path", "allow_external"}
    assert ours.model_dump(exclude=moved) == bundled.model_dump(exclude=moved)


def test_k8s_pod_environment_loads_the_definitions_with_the_k8s_job_executor(
    tmp_path: Path,
) -> None:
    """The code location loads with the pods' environment (values.yaml's env on top of the
    image's ENV, the profile's spec): `dagster definitions validate`, then every job's executor
    is dagster-k8s's (named `k8s`), so each step of a run is a Kubernetes Job."""
    env = pod_env(tmp_path)
    assert env["MLASSETS_EXECUTOR"] == "k8s_job"
    validate = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "mlassets.definitions"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "All code locations passed validation" in validate.stderr + validate.stdout
    probe = (
        "from mlassets.definitions import defs\n"
        "for job in ('training_job', 'monitoring_job', 'rollback_job'):\n"
        "    print(job, defs.resolve_job_def(job).executor_def.name)\n"
    )
    executors = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert executors.returncode == 0, executors.stderr
    assert executors.stdout.split() == [
        "training_job", "k8s", "monitoring_job", "k8s", "rollback_job", "k8s",
    ]  # fmt: skip


def test_k8s_start_stops_before_doing_anything_without_its_tools(tmp_path: Path) -> None:
    """Without docker, helm or kubectl on PATH, `start` says which is missing and exits 2 before
    building, pushing or applying anything (it reads only its profile.env)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(shutil.which("bash"))
    result = subprocess.run(
        [str(K8S / "start")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("deploy/k8s/start: docker not found"), result.stderr
    assert result.stdout == ""


def _installed(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)
