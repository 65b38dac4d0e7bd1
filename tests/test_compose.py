"""The compose files, .env.example and the Dockerfiles, checked structurally (no Docker needed).

What a typo would break at ``docker compose up`` time is checked here instead: every service is there and
starts in order of health, build files and the files they copy exist, every variable is documented, the
GPU and AWS override files change only what they claim to, and each command line parses with the real
parser of the program it starts (``emgpose``, uvicorn, celery) and names code that exists.
The reading of the compose files (merge, interpolation, each service's argv and environment) is in
``compose.py`` beside this file, for the end-to-end test that runs the services as local processes.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
from celery.bin.celery import celery as celery_cli
from compose import (
    AWS,
    COMPOSE,
    GPU,
    RESET,
    ROOT,
    VAR,
    Override,
    active,
    env_example,
    interpolate,
    load,
    merge,
    project,
    service_commands,
)

from emgpose.cli import build_parser
from emgpose.settings import Settings

INFRA = ("redis", "postgres", "minio")
APP = ("gateway", "inference", "preprocessor", "trainer")  # long-running services built from this repository
WORKERS = {"preprocessor": "preprocess", "trainer": "train"}  # service -> its Celery queue
STACK = {*INFRA, "minio-init", "migrate", *APP}
JOBS = ("synth", "preprocess-cli")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# the Dockerfile each built service uses (services sharing an image share its Dockerfile)
DOCKERFILES = {
    "migrate": "gateway",
    "gateway": "gateway",
    "inference": "inference",
    "preprocessor": "preprocessor",
    "trainer": "trainer",
    "synth": "preprocessor",
    "preprocess-cli": "preprocessor",
}
SLIM = ("gateway", "inference")  # python:3.12-slim images
CUDA = ("preprocessor", "trainer")  # CUDA runtime images with Python 3.12 and CuPy
CONFIGS = {
    "cpu": (COMPOSE,),
    "gpu": (COMPOSE, GPU),
    "aws": (COMPOSE, AWS),
    "gpu+aws": (COMPOSE, GPU, AWS),
}
S3_KEYS = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def long_running(service: dict[str, Any]) -> bool:
    return service.get("restart", "no") != "no"


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart", "no") == "no"


def seconds(duration: str | int) -> float:
    """A compose duration (``30s``, ``5m``, ``1m30s``, ``1h``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms|us)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"not a duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def dockerfile_of(service: dict[str, Any]) -> tuple[Path, Path]:
    build = service["build"]
    build = {"context": build} if isinstance(build, str) else build
    context = (COMPOSE.parent / build.get("context", ".")).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def copy_sources(arguments: str) -> list[str] | None:
    """The sources of a COPY from the build context; ``None`` for ``COPY --from=`` (another stage)."""
    words = [w for w in shlex.split(arguments) if not w.startswith("--") or w.startswith("--from")]
    if any(w.startswith("--from") for w in words):
        return None
    assert len(words) >= 2, f"COPY needs sources and a destination: {arguments!r}"
    return words[:-1]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (a top-level name) out of the build context; last match wins."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if re.fullmatch(re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*"), path):
            ignored = not negated
    return ignored


def strings(value: Any) -> list[str]:
    """Every string value in a loaded compose model (where compose substitutes variables)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for action in actions for name in action.choices}


def click_parse(command: click.Command, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Options and arguments as the real click command reads them (unknown options fail), not converted."""
    try:
        options, rest, _ = command.make_parser(click.Context(command)).parse_args(list(args))
    except click.UsageError as exc:
        pytest.fail(f"{command.name} {shlex.join(args)}: {exc}")
    return options, rest


def package_dirs() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def module_file(module: str) -> Path:
    """The source file of an import name of this project, by pyproject's package-dir mapping."""
    top, *rest = module.split(".")
    folder = package_dirs().get(top)
    assert folder, f"{module}: {top!r} is not a package of this project ({sorted(package_dirs())})"
    base = ROOT / folder / Path(*rest) if rest else ROOT / folder
    candidates = [base.with_suffix(".py"), base / "__init__.py"]
    found = [path for path in candidates if path.is_file()]
    assert found, f"{module}: neither {candidates[0].relative_to(ROOT)} nor {candidates[1].relative_to(ROOT)} exists"
    return found[0]


def module_names(path: Path) -> set[str]:
    """Names bound at the top level of a module: assignments, imports, functions and classes."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as written (variables not substituted)."""
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """docker-compose.yml's services, interpolated with the .env.example values."""
    return project()["services"]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return env_example()


# --- the stack ------------------------------------------------------------------------------------------


def test_every_service_of_the_stack_is_declared(services: dict[str, dict[str, Any]]) -> None:
    assert STACK | set(JOBS) <= set(services), f"missing: {STACK | set(JOBS) - set(services)}"
    for name in STACK:
        assert "profiles" not in services[name], f"{name} starts with a plain `docker compose up`"
    for name in JOBS:
        assert services[name].get("profiles") == ["jobs"], f"{name} is a one-shot job in the 'jobs' profile"
        assert one_shot(services[name])
    assert one_shot(services["migrate"]) and one_shot(services["minio-init"])
    for name in (*INFRA, *APP):
        assert services[name]["restart"] == "unless-stopped", f"{name} must come back after a crash or reboot"


@pytest.mark.parametrize("config", CONFIGS)
def test_every_dependency_exists_and_has_a_condition_it_can_meet(config: str) -> None:
    services = project(files=CONFIGS[config])["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with a condition"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            condition = (spec or {}).get("condition")
            assert condition in CONDITIONS, f"{name} -> {target}: condition {condition!r} not in {CONDITIONS}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                assert one_shot(services[target]), f"{name} waits for {target} to exit, but it is restarted"
            same_profile = services[target].get("profiles") in (None, service.get("profiles"))
            assert same_profile, (
                f"{config}: {name} depends on {target}, only started in profiles {services[target]['profiles']}"
            )


@pytest.mark.parametrize("config", CONFIGS)
def test_up_wait_succeeds_because_every_one_shot_step_is_awaited(config: str) -> None:
    """`up --wait` counts an exited container as a failure unless a running service waits for it to complete."""
    services = {n: s for n, s in project(files=CONFIGS[config])["services"].items() if active(s)}
    awaited = {
        target
        for service in services.values()
        if long_running(service)
        for target, spec in service.get("depends_on", {}).items()
        if spec["condition"] == "service_completed_successfully"
    }
    steps = {name for name, service in services.items() if one_shot(service)}
    assert steps == awaited, f"{config}: one-shot steps nobody waits for: {steps - awaited}"


def test_the_app_starts_after_migrations_broker_and_bucket(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["command"] == ["emgpose", "db", "upgrade"]
    wanted = {
        "migrate": "service_completed_successfully",
        "redis": "service_healthy",
        "minio-init": "service_completed_successfully",
    }
    for name in ("gateway", *WORKERS):
        depends = services[name]["depends_on"]
        conditions = {target: spec["condition"] for target, spec in depends.items()}
        assert wanted.items() <= conditions.items(), f"{name}: {conditions}, wanted at least {wanted}"
    assert services["gateway"]["depends_on"]["inference"]["condition"] in ("service_started", "service_healthy")
    assert services["inference"]["depends_on"] == {  # the bucket, and the api_keys table it checks keys in
        "minio-init": {"condition": "service_completed_successfully"},
        "migrate": {"condition": "service_completed_successfully"},
    }


def test_long_running_services_have_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    running = {name for name, s in services.items() if long_running(s)}
    assert set(INFRA) | set(APP) <= running
    for name in running:
        check = services[name].get("healthcheck", {})
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {check}"
        for key in ("interval", "timeout"):
            assert key not in check or seconds(check[key]) > 0


@pytest.mark.parametrize("name", ["gateway", "inference"])
def test_http_services_check_their_own_healthz(services: dict[str, dict[str, Any]], name: str) -> None:
    port = click_parse(importlib.import_module("uvicorn.main").main, services[name]["command"][1:])[0]["port"]
    test = services[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"{name}: the slim image has python, not curl: {test}"
    assert f"urlopen('http://127.0.0.1:{port}/healthz'" in test[3], f"{name} must check /healthz on port {port}"
    compile(test[3], f"{name} healthcheck", "exec")


def test_ports_are_local_except_the_gateway_where_asked(raw: dict[str, Any], env: dict[str, str]) -> None:
    for name, service in raw["services"].items():
        for port in service.get("ports", []):
            bind = "${GATEWAY_BIND:-127.0.0.1}:" if name == "gateway" else "127.0.0.1:"
            assert port.startswith(bind), f"{name}: publish {port!r} on {bind} only"
    assert env["GATEWAY_BIND"] == "127.0.0.1", "the example keeps the gateway local"
    assert raw["services"]["gateway"]["ports"] == ["${GATEWAY_BIND:-127.0.0.1}:${GATEWAY_PORT:-8000}:8000"]
    assert raw["services"]["inference"]["ports"] == ["127.0.0.1:${INFERENCE_PORT:-8001}:8001"]


def test_workers_shut_down_warm_and_come_back(services: dict[str, dict[str, Any]]) -> None:
    grace = {name: seconds(services[name]["stop_grace_period"]) for name in WORKERS}
    assert grace["preprocessor"] >= 60 and grace["trainer"] > grace["preprocessor"], grace
    for name in WORKERS:
        assert services[name]["restart"] == "unless-stopped"


# --- variables ------------------------------------------------------------------------------------------


def test_every_variable_used_is_in_env_example_and_vice_versa(env: dict[str, str]) -> None:
    texts = {path.name: path.read_text() for path in (COMPOSE, GPU, AWS)}
    used = {match.group(1) for text in texts.values() for match in VAR.finditer(text)}
    assert used, "the pattern found no ${VAR} at all"
    assert used - set(env) == set(), f"used in the compose files but not listed in .env.example: {used - set(env)}"
    assert set(env) - used == set(), f"listed in .env.example but not used: {set(env) - used}"
    for path in (COMPOSE, GPU, AWS):
        bare = [w for value in strings(load(path)) for w in re.findall(r"\$(?!\{)\w*", value.replace("$$", ""))]
        assert not bare, f"{path.name}: write ${{VAR}}, or $$ for a literal $ (found {bare})"
    for config in CONFIGS.values():
        project(files=config)  # every required variable has a value in the example


def test_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE.read_text()
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AUTH_PEPPER"):
        forms = {match.group(2) for match in VAR.finditer(text) if match.group(1) == name}
        assert forms == {":?"}, f"{name} must be ${{{name}:?...}} everywhere, found forms {forms}"


def test_the_example_env_gives_minio_a_password_it_accepts(env: dict[str, str]) -> None:
    assert len(env["MINIO_ROOT_PASSWORD"]) >= 8 and len(env["MINIO_ROOT_USER"]) >= 3
    assert re.fullmatch(r"[A-Za-z0-9._-]+", env["POSTGRES_PASSWORD"]), "it goes into DATABASE_URL unquoted"


# --- environments ---------------------------------------------------------------------------------------


def settings_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= {str(choice) for choice in alias.choices} if alias is not None else {name.upper()}
    return names


def test_services_read_only_settings_that_exist(services: dict[str, dict[str, Any]], env: dict[str, str]) -> None:
    # boto3's own two, and prometheus-client's multiprocess folder (emgpose.metrics)
    known = settings_names() | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PROMETHEUS_MULTIPROC_DIR"}
    for name, service in services.items():
        if "build" in service:
            environment = service["environment"]
            assert isinstance(environment, dict), f"{name}: write environment as a mapping"
            assert set(environment) <= known, f"{name}: no setting reads {set(environment) - known}"
            assert environment["STORE_URI"] == f"s3://{env['S3_BUCKET']}", f"{name}: the bucket minio-init makes"


def test_the_app_reaches_postgres_redis_minio_and_inference(services: dict[str, Any], env: dict[str, str]) -> None:
    for name in ("migrate", "gateway", *WORKERS):
        environment = services[name]["environment"]
        user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
        assert environment["DATABASE_URL"] == f"postgresql+psycopg://{user}:{password}@postgres:5432/{db}"
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert services["gateway"]["environment"]["INFERENCE_URL"] == "http://inference:8001"
    for service in services.values():
        if "build" in service:
            environment = service["environment"]
            assert environment["S3_ENDPOINT_URL"] == "http://minio:9000"
            assert environment["AWS_ACCESS_KEY_ID"] == env["MINIO_ROOT_USER"]
            assert environment["AWS_SECRET_ACCESS_KEY"] == env["MINIO_ROOT_PASSWORD"]
            assert environment["AWS_DEFAULT_REGION"]
    inference = services["inference"]["environment"]
    assert {"MODEL_NAME", "RELOAD_INTERVAL_S"} <= set(inference) and "REDIS_URL" not in inference
    assert inference["DATABASE_URL"] == services["gateway"]["environment"]["DATABASE_URL"], "the same api_keys"
    for name in WORKERS:
        assert services[name]["environment"]["DEVICE"] == "auto"


# --- command lines --------------------------------------------------------------------------------------


def emgpose_services() -> list[str]:
    return [name for name, s in project()["services"].items() if s.get("command", [""])[0] == "emgpose"]


def test_api_keys_are_on_for_the_http_services_with_one_pepper(services: dict[str, Any], env: dict[str, str]) -> None:
    """Compose enables keys by default: the gateway and inference check the same keys with the same pepper."""
    assert env["AUTH_ENABLED"] == "true" and len(env["AUTH_PEPPER"]) >= 32, "the example must start as it is"
    gateway, inference = services["gateway"]["environment"], services["inference"]["environment"]
    for environment in (gateway, inference):
        assert environment["AUTH_ENABLED"] == "true" and environment["AUTH_PEPPER"] == env["AUTH_PEPPER"]
    assert gateway["MAX_JOBS_IN_FLIGHT_PER_KEY"] == env["MAX_JOBS_IN_FLIGHT_PER_KEY"]
    opened = project({"AUTH_ENABLED": "false"})["services"]
    assert {opened[name]["environment"]["AUTH_ENABLED"] for name in ("gateway", "inference")} == {"false"}
    for name in WORKERS:  # workers check no keys and get no pepper
        assert "AUTH_PEPPER" not in services[name]["environment"]


def test_the_emgpose_commands_are_the_steps_and_jobs() -> None:
    assert sorted(emgpose_services()) == sorted(["migrate", *JOBS])


@pytest.mark.parametrize("name", emgpose_services())
def test_emgpose_commands_parse_with_the_real_cli(services: dict[str, dict[str, Any]], env, name: str) -> None:
    words = services[name]["command"][1:]
    assert words[0] in subcommands(build_parser()), f"{name}: {words[0]!r} is not an emgpose subcommand (yet)"
    try:
        args = build_parser().parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"{name}: `emgpose {shlex.join(words)}` does not parse (exit {exc.code})")
    for uri in (getattr(args, key) for key in ("data", "out") if hasattr(args, key)):
        assert uri.startswith(f"s3://{env['S3_BUCKET']}/"), f"{name}: {uri} is not in the bucket minio-init makes"


def test_preprocess_cli_reads_what_synth_writes(services: dict[str, dict[str, Any]]) -> None:
    synth_out = build_parser().parse_args(services["synth"]["command"][1:]).out
    assert build_parser().parse_args(services["preprocess-cli"]["command"][1:]).data == synth_out


@pytest.mark.parametrize("name", ["gateway", "inference"])
def test_uvicorn_serves_an_app_that_exists(services: dict[str, dict[str, Any]], name: str) -> None:
    command = services[name]["command"]
    assert command[0] == "uvicorn"
    options, rest = click_parse(importlib.import_module("uvicorn.main").main, command[1:])
    assert not rest and options["host"] == "0.0.0.0", f"{name}: listen on all interfaces inside the container"
    module, _, attribute = options["app"].partition(":")
    assert module == f"emgpose_{name}.main" and attribute, f"{name}: serve emgpose_{name}.main:<app>"
    path = module_file(module)
    assert attribute in module_names(path), f"{name}: {path.relative_to(ROOT)} binds no {attribute!r}"
    published = [p.rsplit(":", 1)[1] for p in services[name]["ports"]]
    assert published == [options["port"]], f"{name}: listens on {options['port']}, publishes {published}"


@pytest.mark.parametrize("name", list(WORKERS))
def test_celery_workers_consume_their_queue_one_task_at_a_time(services: dict[str, dict[str, Any]], name: str):
    command = services[name]["command"]
    assert command[0] == "celery"
    top, rest = click_parse(celery_cli, command[1:])
    assert rest[0] == "worker", f"{name}: run `celery -A ... worker`"
    options, extra = click_parse(celery_cli.commands["worker"], rest[1:])
    assert not extra
    module = top["app"]
    assert module == f"emgpose_{name}.worker", f"{name}: -A emgpose_{name}.worker"
    path = module_file(module)
    assert {"app", "celery"} & module_names(path), f"{name}: {path.relative_to(ROOT)} binds no Celery `app`"
    queue = WORKERS[name]
    assert options["queues"] == queue, f"{name}: consume queue {queue!r} only, not {options['queues']!r}"
    assert options["pool"] in ("solo", "threads"), f"{name}: GPU work needs one process (solo or threads)"
    assert options["prefetch_multiplier"] == "1", f"{name}: a long task must not hold others back"
    assert options["hostname"] == f"{queue}@%h"
    assert int(options.get("concurrency", 1)) >= 1


@pytest.mark.parametrize("name", list(WORKERS))
def test_worker_healthchecks_ping_their_own_node(raw, services: dict[str, dict[str, Any]], env, name: str):
    check = services[name]["healthcheck"]
    assert check["test"][0] == "CMD-SHELL", f"{name}: the shell expands $HOSTNAME"
    assert "$$HOSTNAME" in raw["services"][name]["healthcheck"]["test"][1], "write $$HOSTNAME for the shell's $"
    words = shlex.split(check["test"][1])
    assert words[0] == "celery"
    top, rest = click_parse(celery_cli, words[1:])
    worker_top, worker_rest = click_parse(celery_cli, services[name]["command"][1:])
    assert top["app"] == worker_top["app"]
    assert rest[:2] == ["inspect", "ping"], f"{name}: {words}"
    options, _ = click_parse(celery_cli.commands["inspect"], rest[1:])
    hostname = click_parse(celery_cli.commands["worker"], worker_rest[1:])[0]["hostname"]
    assert options["destination"] == hostname.replace("%h", "$HOSTNAME"), f"{name}: ping this container's node"
    assert seconds(check["timeout"]) > float(options["timeout"])
    pool = click_parse(celery_cli.commands["worker"], worker_rest[1:])[0]["pool"]
    if pool == "solo":  # a busy solo worker answers no ping until its task ends
        tolerated = seconds(check["interval"]) * check["retries"]
        assert tolerated >= int(env["JOB_TIME_LIMIT_S"]), f"{name}: unhealthy during a long job ({tolerated} s)"


# --- images ---------------------------------------------------------------------------------------------


def test_each_service_builds_its_own_image(raw: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    built = {name for name, s in services.items() if "build" in s}
    assert built == set(DOCKERFILES), f"built services {built}, expected {set(DOCKERFILES)}"
    for name, folder in DOCKERFILES.items():
        context, dockerfile = dockerfile_of(services[name])
        assert context == ROOT, f"{name}: build from the repository root (pip install . needs it)"
        assert dockerfile == ROOT / "services" / folder / "Dockerfile", f"{name}: {dockerfile}"
        assert raw["services"][name]["image"] == f"emgpose-{folder}:${{EMGPOSE_TAG:-dev}}", name
    folders = {path.parent.name for path in (ROOT / "services").glob("*/Dockerfile")}
    assert folders == set(DOCKERFILES.values()), (
        f"a Dockerfile no service builds: {folders - set(DOCKERFILES.values())}"
    )


@pytest.mark.parametrize("folder", sorted(set(DOCKERFILES.values())))
def test_dockerfile_copies_what_exists_and_pip_needs(folder: str) -> None:
    instructions = dockerfile_instructions(ROOT / "services" / folder / "Dockerfile")
    copied = [s for k, a in instructions if k in ("COPY", "ADD") for s in copy_sources(a) or []]
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    for source in copied:
        assert list(ROOT.glob(source)), f"{folder}: COPY source {source!r} does not exist"
        assert not dockerignored(source, ignore), f"{folder}: COPY {source!r}, but .dockerignore leaves it out"
    project_meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project_meta["project"]["readme"], *package_dirs().values()}
    tops = {path.split("/")[0] for path in needed}
    assert tops <= set(copied), f"{folder}: pip install . needs {tops - set(copied)} in the image"
    assert "emgpose" in project_meta["project"]["scripts"]


@pytest.mark.parametrize("folder", sorted(set(DOCKERFILES.values())))
def test_dockerfile_runs_as_non_root_without_secrets_or_entrypoint(folder: str) -> None:
    instructions = dockerfile_instructions(ROOT / "services" / folder / "Dockerfile")
    keywords = [keyword for keyword, _ in instructions]
    assert keywords[0] == "FROM" and keywords.count("FROM") == 1
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must end on a non-root USER"
    assert "ENTRYPOINT" not in keywords, "compose's command is the whole argv (tests run it as a local process)"
    env_text = " ".join(args for keyword, args in instructions if keyword in ("ENV", "ARG"))
    assert "PYTHONUNBUFFERED=1" in env_text, "logs must reach `docker compose logs` at once"
    secret = re.compile(r"(PASSWORD|SECRET|ACCESS_KEY|TOKEN|DATABASE_URL)", re.I)
    assert not secret.search(env_text), f"{folder}: no credentials in an image: {env_text}"


@pytest.mark.parametrize("folder", SLIM)
def test_http_images_are_python_312_slim(folder: str) -> None:
    base = dockerfile_instructions(ROOT / "services" / folder / "Dockerfile")[0][1]
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", base), f"{folder}: FROM {base}"


@pytest.mark.parametrize("folder", CUDA)
def test_worker_images_are_cuda_runtime_with_python_312_and_cupy(folder: str) -> None:
    instructions = dockerfile_instructions(ROOT / "services" / folder / "Dockerfile")
    base = instructions[0][1]
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu24\.04", base), f"{folder}: pin a CUDA 12 tag: {base}"
    run = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "python3.12 -m venv /opt/venv" in run, f"{folder}: Python 3.12 in a venv"
    assert re.search(r"cupy-cuda12x", run), f"{folder}: install CuPy for CUDA 12"
    env_text = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env_text, f"{folder}: the venv's celery and emgpose on PATH"


# --- override files -------------------------------------------------------------------------------------


def test_the_gpu_file_only_reserves_a_gpu_for_the_workers() -> None:
    gpu = load(GPU)
    assert set(gpu) == {"services"} and set(gpu["services"]) == set(WORKERS)
    for name, service in gpu["services"].items():
        assert service == {
            "environment": {"DEVICE": "cuda"},
            "deploy": {
                "resources": {"reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
            },
        }, name
    base, merged = project()["services"], project(files=CONFIGS["gpu"])["services"]
    assert set(merged) == set(base)
    for name in base:
        expected = base[name]
        if name in WORKERS:
            expected = {**expected, "environment": {**expected["environment"], "DEVICE": "cuda"}}
            expected["deploy"] = gpu["services"][name]["deploy"]
        assert merged[name] == expected, f"the GPU file changes {name} beyond its GPU"


def test_the_aws_file_swaps_minio_for_the_instance_role(env: dict[str, str]) -> None:
    base, merged = project()["services"], project(files=CONFIGS["aws"])["services"]
    assert set(merged) == set(base)
    for name in ("minio", "minio-init"):
        assert not active(merged[name]) and merged[name] == {**base[name], "profiles": ["minio"]}
    for name, service in merged.items():
        if name in ("minio", "minio-init"):
            continue
        assert "minio-init" not in service.get("depends_on", {}), f"{name} still waits for minio-init"
        expected = dict(base[name])
        if "build" in service:
            environment = service["environment"]
            assert not set(S3_KEYS) & set(environment), f"{name}: boto3 must use AWS S3 and the instance role"
            assert environment["STORE_URI"] == f"s3://{env['S3_BUCKET']}"
            expected["environment"] = {k: v for k, v in base[name]["environment"].items() if k not in S3_KEYS}
            depends = {k: v for k, v in base[name].get("depends_on", {}).items() if k != "minio-init"}
            expected.pop("depends_on", None)
            if depends:
                expected["depends_on"] = depends
        assert service == expected, f"the AWS file changes {name} beyond S3 access"


def test_the_override_files_build_nothing_and_name_known_services() -> None:
    names = set(load(COMPOSE)["services"])
    for path in (GPU, AWS):
        services = load(path)["services"]
        assert set(services) <= names, f"{path.name} defines new services {set(services) - names}"
        for name, service in services.items():
            assert not {"build", "image", "command"} & set(service), f"{path.name}: {name} changes what runs"


# --- the helper for the end-to-end test -----------------------------------------------------------------


def test_service_commands_give_each_services_argv_and_environment(env: dict[str, str]) -> None:
    commands = service_commands({"POSTGRES_PASSWORD": "s3cret", "PREPROCESS_CONCURRENCY": "3"})
    assert set(commands) == {"migrate", *APP}, "jobs in profiles are left out unless asked for"
    argv, environment = commands["preprocessor"]
    assert argv[argv.index("--concurrency") + 1] == "3"
    assert "s3cret@postgres:5432" in environment["DATABASE_URL"]
    assert all(isinstance(v, str) for _, e in commands.values() for v in e.values())
    assert commands["migrate"][0] == ["emgpose", "db", "upgrade"]

    hosts = {
        "postgres:5432": "127.0.0.1:15432",
        "redis:6379": "127.0.0.1:16379",
        "minio:9000": "127.0.0.1:19000",
        "inference:8001": "127.0.0.1:18001",
    }
    local = service_commands({}, hosts=hosts, profiles=["jobs"])
    assert set(local) == {"migrate", *APP, *JOBS}
    gateway = local["gateway"][1]
    assert gateway["DATABASE_URL"].endswith(f"@127.0.0.1:15432/{env['POSTGRES_DB']}")
    assert gateway["REDIS_URL"] == "redis://127.0.0.1:16379/0"
    assert gateway["S3_ENDPOINT_URL"] == "http://127.0.0.1:19000"
    assert gateway["INFERENCE_URL"] == "http://127.0.0.1:18001"

    aws = service_commands({"S3_BUCKET": "lab-bucket"}, files=CONFIGS["gpu+aws"])
    assert aws["trainer"][1]["DEVICE"] == "cuda" and aws["trainer"][1]["STORE_URI"] == "s3://lab-bucket"
    assert "S3_ENDPOINT_URL" not in aws["gateway"][1]


def test_the_checks_catch_what_they_claim_to(tmp_path: Path) -> None:
    """The helpers above are the tests' teeth: broken inputs must make them fail."""
    assert VAR.findall("$${POSTGRES_USER} ${A} ${B:-x} ${C:?need C}") == [
        ("A", "", ""),
        ("B", ":-", "x"),
        ("C", ":?", "need C"),
    ]
    with pytest.raises(ValueError, match="required variable C"):
        interpolate("${C:?need C}", {})
    assert interpolate("${B:-x}/$${HOME}", {}) == "x/${HOME}"
    assert interpolate("${B:-x}|${B-x}|${B}", {"B": ""}) == "x||"
    bad = tmp_path / ".env"
    bad.write_text("lower=1\n")
    with pytest.raises(ValueError, match="not NAME=value"):
        env_example(bad)
    assert copy_sources("--chown=1:1 a b ./") == ["a", "b"] and copy_sources("--from=build /x /y") is None
    assert not long_running({"image": "x"}) and long_running({"image": "x", "restart": "always"})
    assert seconds("1m30s") == 90 and seconds("5m") == 300
    assert dockerignored("docs", ["*", "!shared"]) and not dockerignored("shared", ["*", "!shared"])
    assert "run" in subcommands(build_parser())
    base = {"a": {"b": 1, "c": [1]}, "command": ["x"], "d": {"e": 1}}
    override = {"a": {"b": RESET, "c": [2]}, "command": ["y"], "d": Override({"f": 2})}
    assert merge(base, override) == {"a": {"c": [1, 2]}, "command": ["y"], "d": {"f": 2}}
    module = tmp_path / "m.py"
    module.write_text("from x import app as api\nworker = 1\ndef make(): pass\n")
    assert module_names(module) == {"api", "worker", "make"}
