"""The classic kubefuncs example: the gateway routes ``/test/`` to topic ``test`` and this
function answers ``pong``.

    python -m kubefuncs example.ping:pong          # KF_BUS_URL=valkey://localhost:6379/0
    curl localhost:8080/test/hello                 # -> pong
"""

from kubefuncs import HttpRequest, function


@function("test")
async def pong(request: HttpRequest) -> str:
    return "pong"
