"""An event consumer woken by a schedule (functions.yaml publishes to ``ticks``)."""

from typing import Any

from kubefuncs import Context, function


@function("ticks")
async def handle(event: Any, ctx: Context) -> None:
    ctx.log.info("tick from %s", event.get("source") if isinstance(event, dict) else event)
