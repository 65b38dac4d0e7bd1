"""The compose files read the way ``docker compose`` reads them, without Docker: for tests.

* :func:`load` parses one file, keeping the ``!reset`` and ``!override`` tags of override files;
* :func:`merge` merges files in order (the compose specification's rules for the attributes used here);
* :func:`interpolate` substitutes ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` and ``$$``;
* :func:`project` is the merged, interpolated model; :func:`service_commands` the argv and environment
  of each service built from this repository, for tests that run them as local processes.

Variables come from ``.env.example`` (what ``cp .env.example .env`` gives) overridden by the caller, as
compose lets the shell environment override ``.env``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
GPU = ROOT / "docker-compose.gpu.yml"
AWS = ROOT / "docker-compose.aws.yml"
ENV_EXAMPLE = ROOT / ".env.example"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; "$${...}" is a literal "$"
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# attributes whose sequences an override replaces instead of appending to (compose spec, "Merge")
_REPLACED = {"command", "entrypoint", "test"}


class _Reset:
    def __repr__(self) -> str:
        return "!reset"


RESET = _Reset()


@dataclass(frozen=True)
class Override:
    """A value tagged ``!override``: it replaces the earlier files' value instead of merging with it."""

    value: Any


class _Loader(yaml.SafeLoader):
    pass


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


_Loader.add_constructor("!reset", lambda loader, node: RESET)
_Loader.add_constructor("!override", _construct_override)


def load(path: Path = COMPOSE) -> dict[str, Any]:
    """One compose file as YAML gives it (anchors and ``<<`` merge keys resolved, tags kept)."""
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader with two tags


def env_example(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """``NAME=value`` lines of an env file; comments and blank lines skipped, anything else refused."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not (sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name)):
            raise ValueError(f"{path.name}:{number}: not NAME=value: {line!r}")
        if name in values:
            raise ValueError(f"{path.name}:{number}: {name} set twice")
        values[name] = value
    return values


def _clean(value: Any) -> Any:
    """A value from an override that has no counterpart in the earlier files: tags resolved."""
    if isinstance(value, Override):
        return _clean(value.value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def merge(base: Any, override: Any, key: str | None = None) -> Any:
    """``override`` merged onto ``base`` by the compose rules for the attributes these files use.

    Mappings merge key by key; sequences append (``command``, ``entrypoint`` and ``healthcheck.test``
    are replaced), skipping entries already there; scalars are replaced; ``!override`` replaces
    whatever was there and ``!reset`` removes it.
    """
    if isinstance(override, Override):
        return _clean(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if value is RESET:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = merge(merged[name], value, name)
            else:
                merged[name] = _clean(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [item for item in _clean(override) if item not in base]
    return _clean(override)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution for the forms used here (no nesting), failing where compose would."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        value = env.get(name)
        missing = not value if op and op.startswith(":") else value is None  # ":" also treats "" as unset
        if missing and op in (":?", "?"):
            raise ValueError(f"required variable {name} has no value: {arg}")
        if missing and op in (":-", "-"):
            return arg
        return value or ""

    return VAR.sub(substitute, text).replace("$$", "$")


def interpolate_all(value: Any, env: Mapping[str, str]) -> Any:
    """Every string value in a loaded model interpolated (keys are not, as in compose)."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, dict):
        return {k: interpolate_all(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_all(v, env) for v in value]
    return value


def variables(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values compose would see: ``.env.example`` (as ``.env``) overridden by ``env``."""
    return {**env_example(), **(env or {})}


def project(env: Mapping[str, str] | None = None, files: Iterable[Path] = (COMPOSE,)) -> dict[str, Any]:
    """The model ``docker compose -f A -f B ... config`` would give: files merged, then interpolated."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = merge(merged, load(path))
    return interpolate_all(merged, variables(env))


def active(service: Mapping[str, Any], profiles: Iterable[str] = ()) -> bool:
    """Whether ``docker compose [--profile P ...] up`` starts the service."""
    return not service.get("profiles") or bool(set(service["profiles"]) & set(profiles))


def _rewrite(text: str, hosts: Mapping[str, str]) -> str:
    for address, replacement in hosts.items():
        text = re.sub(rf"(?<![\w.-]){re.escape(address)}(?![\w-])", replacement, text)
    return text


def service_commands(
    env: Mapping[str, str] | None = None,
    *,
    files: Iterable[Path] = (COMPOSE,),
    profiles: Iterable[str] = (),
    hosts: Mapping[str, str] | None = None,
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """``{service: (argv, environment)}`` for each service built from this repository.

    ``argv`` is the service's ``command`` (the images have no ``ENTRYPOINT``, so it is the whole
    command line) and ``environment`` its ``environment`` block, both interpolated with the
    ``.env.example`` values overridden by ``env``. Only services that ``up`` would start with these
    ``profiles`` are returned. ``hosts`` rewrites compose's service addresses for processes that run
    outside compose, e.g. ``{"postgres:5432": "127.0.0.1:54321", "inference:8001": "127.0.0.1:8001"}``.
    The environment is the service's own: merge it onto ``os.environ`` (for ``PATH``) before use.
    """
    model = project(env, files)
    hosts = hosts or {}
    commands = {}
    for name, service in model["services"].items():
        if "build" not in service or not active(service, profiles):
            continue
        command = service["command"]
        if not isinstance(command, list):
            raise ValueError(f"{name}: write command as a list (exec form), got {command!r}")
        argv = [_rewrite(str(word), hosts) for word in command]
        environment = {
            key: _rewrite("" if value is None else str(value), hosts)
            for key, value in service.get("environment", {}).items()
        }
        commands[name] = (argv, environment)
    return commands
