"""An HTTP function: ``GET /hello/?name=Ada`` or ``POST /hello/`` with ``{"name": "Ada"}``."""

from urllib.parse import parse_qs

from kubefuncs import HttpRequest, function


@function("hello")
async def handle(request: HttpRequest) -> dict[str, str]:
    name = parse_qs(request.query).get("name", [""])[0]
    if not name and request.body:
        body = request.json()
        name = body.get("name", "") if isinstance(body, dict) else ""
    return {"greeting": f"Hello, {name or 'world'}!"}
