"""Dependencies as ``Annotated`` aliases (STYLE.md, habit 2).

The holder and the runner live in the lifespan state (``request.state``); settings, metrics and the
prediction memory budget are made with the app (``app.state``), so the middleware can count requests
before the lifespan starts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from emgpose.settings import Settings
from emgpose_inference.admission import MemoryBudget
from emgpose_inference.infer import Runner
from emgpose_inference.metrics import Metrics
from emgpose_inference.state import Loaded, ModelHolder


async def get_holder(conn: HTTPConnection) -> ModelHolder:
    return conn.state.holder


async def get_runner(conn: HTTPConnection) -> Runner:
    return conn.state.runner


async def get_metrics(conn: HTTPConnection) -> Metrics:
    return conn.app.state.metrics


async def get_settings_(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
RunnerDep = Annotated[Runner, Depends(get_runner)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings_)]


async def get_model(holder: HolderDep) -> Loaded:
    """The model this request answers with: read once, so a reload mid-request changes nothing."""
    return holder.require()


ModelDep = Annotated[Loaded, Depends(get_model)]


async def get_budget(conn: HTTPConnection) -> MemoryBudget:
    return conn.app.state.budget


BudgetDep = Annotated[MemoryBudget, Depends(get_budget)]
