"""A small client for the gateway's REST API (httpx): upload, submit, wait with progress, predict.

    with Client("http://127.0.0.1:8000", api_key=key) as api:
        dataset = api.upload_dataset("demo", Path("runs/demo/data"))
        job = api.wait(api.submit("preprocess", {"dataset": dataset["id"]}))

The API key (``Authorization: Bearer``) is ``api_key``, else the ``EMGPOSE_API_KEY`` environment variable;
with neither, requests go without one (a gateway with AUTH_ENABLED=false).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from emgpose.errors import EmgPoseError, Unavailable

TERMINAL = ("succeeded", "failed", "cancelled")


def binary_body(emg: np.ndarray, sample_rate: float) -> tuple[bytes, dict[str, str]]:
    """The float32 form of a ``/v1/predict`` request: little-endian samples x channels, shape in headers."""
    body = np.ascontiguousarray(emg, dtype="<f4").tobytes()
    headers = {
        "Content-Type": "application/octet-stream",
        "X-EMG-Samples": str(emg.shape[0]),
        "X-EMG-Channels": str(emg.shape[1]),
        "X-Sample-Rate": repr(float(sample_rate)),
    }
    return body, headers


class ApiError(EmgPoseError):
    """The gateway answered with an error; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


API_KEY_ENV = "EMGPOSE_API_KEY"


class Client:
    def __init__(self, base_url: str, timeout_s: float = 60.0, api_key: str | None = None) -> None:
        api_key = api_key or os.environ.get(API_KEY_ENV, "").strip() or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.http.base_url}{url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, str(detail))
        return response.json()

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        """Any endpoint (``params=``, ``json=``): the JSON answer, or :class:`ApiError` with the server's message."""
        return self._call(method, url, **kwargs)

    def upload_dataset(self, name: str, folder: Path) -> dict[str, Any]:
        """Uploads ``metadata.csv`` and the HDF5 sessions of a local dataset folder."""
        paths = [folder / "metadata.csv", *sorted(folder.glob("*.hdf5"))]
        with contextlib.ExitStack() as stack:
            files = [("files", (p.name, stack.enter_context(open(p, "rb")))) for p in paths]
            return self._call("POST", "/v1/datasets", data={"name": name}, files=files)

    def submit(self, type_: str, params: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        return self._call("POST", "/v1/jobs", json={"type": type_, "params": params}, headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def wait(
        self,
        job: dict[str, Any],
        timeout_s: float = 3600.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 0.5,
    ) -> dict[str, Any]:
        """Polls until the job ends; raises :class:`ApiError` if it did not succeed."""
        deadline = time.monotonic() + timeout_s
        while job["state"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise Unavailable(f"job {job['id']} still {job['state']} after {timeout_s:g} s")
            time.sleep(poll_s)
            job = self.job(job["id"])
            if on_progress:
                on_progress(job)
        if job["state"] != "succeeded":
            error = job.get("error") or {}
            raise ApiError(200, f"job {job['id']} {job['state']}: {error.get('type')}: {error.get('message')}")
        return job

    def models(self) -> dict[str, Any]:
        """``{"items": [{"name", "latest", "versions", "task", "metrics"}, ...], "total": n}``."""
        return self._call("GET", "/v1/models")

    def predict(self, emg: np.ndarray, sample_rate: float) -> dict[str, Any]:
        """Joint angles for ``emg`` (samples x channels), sent as float32 binary."""
        body, headers = binary_body(emg, sample_rate)
        return self._call("POST", "/v1/predict", content=body, headers=headers)

    def wait_for_model(self, version: str, inference_url: str, timeout_s: float = 60.0) -> None:
        """Waits until the inference service reports ``version`` as loaded."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                last = httpx.get(f"{inference_url}/readyz", timeout=5).json()
                if last.get("version") == version:
                    return
            time.sleep(0.25)
        raise Unavailable(f"inference at {inference_url} did not load version {version} in {timeout_s:g} s: {last}")


