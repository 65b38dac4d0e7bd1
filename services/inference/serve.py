"""The inference server in several processes: ``python -m emgpose_inference.serve [--host H] [--port P]``.

Runs ``uvicorn emgpose_inference.main:app --workers N`` with N = ``INFERENCE_WORKERS``, or, unset, one
process per CPU this process may use (:func:`emgpose.devices.usable_cpus`: affinity and cgroup quota,
so a container limited to 2 CPUs runs 2). One process answers one request at a time in Python (the GIL);
several share the port (the kernel spreads connections over them). Each builds its own app: its own
model watcher, which hot-swaps the model on its own (a request is answered by the version it pinned, so a
swap fails none), and its own batcher. The image's default command; compose runs uvicorn itself with
``--workers ${INFERENCE_WORKERS:-2}`` beside the CPU limits it gives the workers.
"""

from __future__ import annotations

import argparse

from emgpose.devices import usable_cpus
from emgpose.metrics import use_multiprocess_dir
from emgpose.settings import Settings, get_settings

APP = "emgpose_inference.main:app"


def workers(settings: Settings) -> int:
    """``INFERENCE_WORKERS``, or the CPUs this process may use."""
    return settings.inference_workers or usable_cpus()


def uvicorn_args(host: str, port: int, settings: Settings) -> list[str]:
    """The uvicorn command line (after ``uvicorn``) this module runs."""
    return [APP, "--host", host, "--port", str(port), "--workers", str(workers(settings))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emgpose_inference.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    import uvicorn.main  # the CLI, so options parse exactly as `uvicorn ...` would

    settings = get_settings()
    if workers(settings) > 1:  # /metrics adds up every worker's values (emgpose.metrics)
        use_multiprocess_dir()
    uvicorn.main.main(uvicorn_args(args.host, args.port, settings))


if __name__ == "__main__":
    main()
