"""Event-driven functions with no reply, showing fan-out: both consume topic ``orders``,
each in its own channel, so every order reaches both (and replicas of one channel share
the orders of that channel).

    python -m kubefuncs example.events:audit       # channel audit
    python -m kubefuncs example.events:email       # channel email
    curl -X POST -H 'X-Api-Key: ...' -H 'Content-Type: application/json' \\
         -d '{"id": 1, "email": "a@example.com"}' localhost:8080/topics/orders
"""

from typing import Any

from kubefuncs import Context, function


@function("orders", channel="audit")
async def audit(order: Any, ctx: Context) -> None:
    ctx.log.info("audit: order %s received", _order_id(order))


@function("orders", channel="email")
async def email(order: Any, ctx: Context) -> None:
    ctx.log.info("email: confirmation for order %s queued", _order_id(order))


def _order_id(order: Any) -> Any:
    return order.get("id") if isinstance(order, dict) else order
