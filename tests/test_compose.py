"""docker-compose.yml, .env.example and the job image's Dockerfile, checked structurally (no Docker needed).

What a typo would break at ``docker compose up`` time is checked here instead: build files and the
files they copy exist, start order goes by health, every variable is documented, and the jobs' command
lines parse with the real ``emgpose`` argument parser.
"""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from emgpose.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INFRA = ("redis", "postgres", "minio")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; "$${...}" is a literal "$"
_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def env_example(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f"{path.name}:{number}: not NAME=value: {line!r}"
        assert name not in values, f"{path.name}:{number}: {name} set twice"
        values[name] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's substitution for the forms used here (no nesting), failing where compose would."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        value = env.get(name)
        if op in (":?", "?") and not value:
            raise AssertionError(f"required variable {name} has no value: {arg}")
        return value if value else (arg or "")

    return _VAR.sub(substitute, text).replace("$$", "$")


def command_words(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    command = service["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
    return [interpolate(word, env) for word in words]


def long_running(service: dict[str, Any]) -> bool:
    return "profiles" not in service and service.get("restart", "no") != "no"


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart", "no") == "no"


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


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for action in actions for name in action.choices}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return env_example()


def test_the_stack_of_today_is_declared(services: dict[str, dict[str, Any]]) -> None:
    assert set(INFRA) | {"minio-init", "synth", "preprocessor"} <= set(services)
    for name in ("synth", "preprocessor"):
        assert services[name].get("profiles") == ["jobs"], f"{name} is a one-shot job in the 'jobs' profile"


def test_every_build_points_at_an_existing_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = {name: s for name, s in services.items() if "build" in s}
    assert "preprocessor" in built
    for name, service in built.items():
        context, dockerfile = dockerfile_of(service)
        assert context.is_dir(), f"{name}: build context {context} is not a folder"
        assert dockerfile.is_file(), f"{name}: no Dockerfile at {dockerfile}"


def test_every_dependency_exists_and_has_a_condition_it_can_meet(services: dict[str, dict[str, Any]]) -> None:
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
                f"{name} depends on {target}, which is only started in profiles {services[target]['profiles']}"
            )


def test_long_running_infrastructure_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    running = {name for name, s in services.items() if long_running(s)}
    assert set(INFRA) <= running
    for name in running:
        check = services[name].get("healthcheck", {})
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {check}"


def test_every_variable_used_is_in_env_example_and_vice_versa(env: dict[str, str]) -> None:
    text = COMPOSE.read_text()
    used = {match.group(1) for match in _VAR.finditer(text)}
    assert used, "the pattern found no ${VAR} at all"
    assert used - set(env) == set(), f"used in docker-compose.yml but not listed in .env.example: {used - set(env)}"
    assert set(env) - used == set(), f"listed in .env.example but not used: {set(env) - used}"
    interpolate(text, env)  # every required variable has a value in the example


def test_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE.read_text()
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        forms = {match.group(2) for match in _VAR.finditer(text) if match.group(1) == name}
        assert forms == {":?"}, f"{name} must be ${{{name}:?...}} everywhere, found forms {forms}"


def test_the_example_env_gives_minio_a_password_it_accepts(env: dict[str, str]) -> None:
    assert len(env["MINIO_ROOT_PASSWORD"]) >= 8 and len(env["MINIO_ROOT_USER"]) >= 3


@pytest.mark.parametrize("name", ["preprocessor", "synth"])
def test_job_commands_parse_with_the_real_cli(services: dict[str, dict[str, Any]], env: dict[str, str], name: str):
    words = command_words(services[name], env)
    assert words[0] in subcommands(build_parser()), f"{name}: {words[0]!r} is not an emgpose subcommand"
    try:
        args = build_parser().parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"{name}: `emgpose {shlex.join(words)}` does not parse (exit {exc.code})")
    for uri in (getattr(args, key) for key in ("data", "out") if hasattr(args, key)):
        assert uri.startswith(f"s3://{env['S3_BUCKET']}/"), f"{name}: {uri} is not in the bucket minio-init makes"


def test_the_preprocessor_reads_what_synth_writes(services: dict[str, dict[str, Any]], env: dict[str, str]) -> None:
    synth_out = build_parser().parse_args(command_words(services["synth"], env)).out
    assert build_parser().parse_args(command_words(services["preprocessor"], env)).data == synth_out


def test_jobs_reach_minio_with_its_root_credentials(services: dict[str, dict[str, Any]]) -> None:
    for name in ("synth", "preprocessor"):
        environment = services[name]["environment"]
        assert environment["S3_ENDPOINT_URL"] == "http://minio:9000"
        assert "MINIO_ROOT_USER" in environment["AWS_ACCESS_KEY_ID"]
        assert "MINIO_ROOT_PASSWORD" in environment["AWS_SECRET_ACCESS_KEY"]
        assert environment["AWS_DEFAULT_REGION"]


def test_dockerfile_copies_files_that_exist_and_runs_emgpose_as_non_root(services: dict[str, dict[str, Any]]):
    context, dockerfile = dockerfile_of(services["preprocessor"])
    instructions = dockerfile_instructions(dockerfile)
    copies = [copy_sources(args) for keyword, args in instructions if keyword in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    for sources in filter(None, copies):
        for source in sources:
            assert list(context.glob(source)), f"COPY source {source!r} does not exist in {context}"
    keywords = [keyword for keyword, _ in instructions]
    assert keywords[0] == "FROM"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must end on a non-root USER"
    assert ("ENTRYPOINT", '["emgpose"]') in instructions
    assert "emgpose" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_files_pyproject_needs_to_build_are_copied(services: dict[str, dict[str, Any]]) -> None:
    _, dockerfile = dockerfile_of(services["preprocessor"])
    copied = {s for k, a in dockerfile_instructions(dockerfile) if k == "COPY" for s in copy_sources(a) or []}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], *project["tool"]["setuptools"]["package-dir"].values()}
    assert needed <= copied, f"pip install . needs {needed - copied} in the image"


def test_the_checks_catch_what_they_claim_to(tmp_path: Path) -> None:
    """The helpers above are the tests' teeth: broken inputs must make them fail."""
    assert _VAR.findall("$${POSTGRES_USER} ${A} ${B:-x} ${C:?need C}") == [
        ("A", "", ""),
        ("B", ":-", "x"),
        ("C", ":?", "need C"),
    ]
    with pytest.raises(AssertionError, match="required variable C"):
        interpolate("${C:?need C}", {})
    assert interpolate("${B:-x}/$${HOME}", {}) == "x/${HOME}"
    bad = tmp_path / ".env"
    bad.write_text("lower=1\n")
    with pytest.raises(AssertionError, match="not NAME=value"):
        env_example(bad)
    assert copy_sources("--chown=1:1 a b ./") == ["a", "b"] and copy_sources("--from=build /x /y") is None
    assert not long_running({"image": "x"}) and long_running({"image": "x", "restart": "always"})
    assert "run" in subcommands(build_parser())
