"""The gateway's Prometheus metrics (:mod:`emgpose.metrics`): requests by route template and status, and
their latency. ``/metrics`` (scope ``read`` where AUTH_ENABLED is on, like inference's) also carries the
job metrics of this process (:mod:`emgpose.jobs.metrics`): the units its reaper sent again and the jobs
it failed. docs/observability.md lists every metric.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from emgpose.jobs import metrics as job_metrics
from emgpose.metrics import CONTENT_TYPE, http_families, new_registry, render

PREFIX = "emgpose_gateway"


class GatewayMetrics:
    """Every metric the gateway app exposes besides the process-wide job metrics."""

    def __init__(self) -> None:
        self.registry = new_registry()
        self.requests, self.request_seconds = http_families(PREFIX, self.registry)

    def render(self) -> bytes:
        """The text exposition: this app's metrics and the job metrics (every worker's in multiprocess mode)."""
        return render(self.registry, job_metrics.REGISTRY)


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text exposition format 0.0.4)",
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "the text exposition"}},
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
