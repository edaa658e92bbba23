"""An order handler shipped as source (tests/functl/test_functl_source.py)."""

from shop.orders.total import total


def handle(payload: dict[str, list[float]]) -> dict[str, float]:
    return {"total": total(payload["prices"])}
