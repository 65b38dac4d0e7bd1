"""Both services fuzzed from their own OpenAPI documents with schemathesis, over real HTTP.

The gateway (PostgreSQL, a local store, the filesystem broker) forwards ``/v1/predict`` to a real
inference service serving the session's trained model; both check API keys against the same database,
as deployed (``AUTH_ENABLED``). schemathesis runs as its own process (``schemathesis run``, every phase:
the schema's examples, coverage of each constraint's edges, random fuzzing, and stateful sequences
along the links it infers), sending an admin key, and every check but two:
``positive_data_acceptance`` (a schema-valid body may still name a dataset that does not exist: 404 is
right) and ``object_level_authorization`` (one key here, nothing to cross). So the run asserts:

* no 5xx (``not_a_server_error``), whatever the input;
* every answer conforms to the document: status documented, body and headers matching their schemas,
  content type (``status_code_conformance``, ``response_schema_conformance``, ...);
* invalid input is refused (``negative_data_rejection``), ``Allow`` on 405 (``unsupported_method``);
* every route that needs a key refuses a request without one or with a wrong one
  (``ignored_auth``, ``missing_required_header``).

Key revocation is left out: a stateful sequence could revoke the very key the run uses
(tests/test_auth.py covers it). :data:`MAX_EXAMPLES` per operation sizes the run to about two minutes
on two cores; ``EMGPOSE_FUZZ_EXAMPLES`` changes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import serve_gateway
from inference_support import NAME, copy_model
from servers import UvicornThread

from emgpose import auth
from emgpose.db.engine import session_scope
from emgpose.settings import Settings
from emgpose_inference.main import create_app as create_inference

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url
pytestmark = pytest.mark.slow  # about 90 s: some 2,800 generated requests

MAX_EXAMPLES = int(os.environ.get("EMGPOSE_FUZZ_EXAMPLES", "40"))
PEPPER = "fuzz-" + "p" * 40  # AUTH_PEPPER of both services (at least 32 characters)
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXCLUDED_CHECKS = "positive_data_acceptance,object_level_authorization"


def admin_key(database_url: str) -> str:
    """A new ``admin`` key in the services' database (what ``emgpose keys create --scope admin`` does)."""
    with session_scope(database_url) as session:
        return auth.create_key(session, auth.pepper_bytes(Settings(auth_pepper=PEPPER).auth_pepper), "admin", "fuzz")[1]


@pytest.fixture(scope="module")
def stack(train_model, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Inference and the gateway, keys on, sharing the database; the admin key to send."""
    folder = tmp_path_factory.mktemp("fuzz")
    store = (folder / "store").as_uri()
    copy_model(train_model, store)
    keyed = {"auth_enabled": True, "auth_pepper": PEPPER, "database_url": pg_url}
    settings = Settings(store_uri=store, model_name=NAME, reload_interval_s=60.0, **keyed)
    with UvicornThread(create_inference(settings)) as inference, pytest.MonkeyPatch.context() as monkeypatch:
        env = {"INFERENCE_URL": inference.url, "AUTH_ENABLED": "true", "AUTH_PEPPER": PEPPER, "MODEL_NAME": NAME}
        with serve_gateway(monkeypatch, folder, pg_url, STORE_URI=store, **env) as gateway:
            yield {"gateway": gateway.url, "inference": inference.url, "key": admin_key(pg_url)}


def fuzz(url: str, key: str, report: Path, *extra: str) -> dict:
    """``schemathesis run`` against ``url``; returns its JSON report (failures printed by the process)."""
    command = [
        str(SCHEMATHESIS), "run", f"{url}/openapi.json",
        "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
        "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--no-shrink", "--seed", "13",
        "--header", f"Authorization: Bearer {key}",
        "--request-timeout", "30", "--suppress-health-check", "all",
        "--report", "json", "--report-json-path", str(report),
        *extra,
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report.parent)  # its cache there
    assert report.exists(), run.stdout[-5000:] + run.stderr[-5000:]
    result = json.loads(report.read_text())
    result["output"] = run.stdout[-20000:]
    return result


def assert_clean(result: dict) -> None:
    cases = result["test_cases"]
    summary = f"{cases['generated']} cases; failures {result['failures']}; errors {result['errors']}"
    assert not result["failures"] and not result["errors"] and result["exit_code"] == 0, (
        summary + "\n" + result["output"]
    )
    assert cases["generated"] >= 10 * result["operations"]["tested"], summary  # it really ran
    phases = {name: phase["status"] for name, phase in result["phases"].items()}
    print(f"schemathesis: {result['operations']['tested']} operations, {summary}, phases {phases}")  # noqa: T201


def test_gateway_has_no_5xx_and_conforms_to_its_schema(stack: dict[str, str], tmp_path: Path) -> None:
    result = fuzz(stack["gateway"], stack["key"], tmp_path / "gateway.json", "--exclude-path-regex", r"/revoke$")
    assert_clean(result)


def test_inference_has_no_5xx_and_conforms_to_its_schema(stack: dict[str, str], tmp_path: Path) -> None:
    assert_clean(fuzz(stack["inference"], stack["key"], tmp_path / "inference.json"))
