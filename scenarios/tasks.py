"""Celery tasks of scenario runs (run by `celery -A chargesim_site worker`, scaled out)."""

from __future__ import annotations

import asyncio

from celery import shared_task

from scenarios.launch import execute_queued


@shared_task(name="scenarios.run_scenario", ignore_result=True)
def run_scenario_task(run_id: int) -> None:
    # The run drives the running workers over the channel layer (Redis), as
    # `runscenario` does with REDIS_URL; its own event loop, for the task's length.
    asyncio.run(execute_queued(run_id))
