"""The v1 API end to end over real Valkey: list, detail, invoke, dead letters, metrics,
auth; every answer validated against the OpenAPI document (console_fixtures.Api)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubefuncs.functl.console.catalog import FileCatalog
from kubefuncs.transport import Transport

from tests.console import handlers
from tests.console.console_fixtures import READER, WRITER, Api, eventually, functions_file, running

pytestmark = pytest.mark.real
FN = "/api/v1/functions/{name}"


@pytest.fixture
async def console(valkey_url: str, tmp_path: Path) -> AsyncIterator[tuple[Api, Transport]]:
    handlers.FAILING["on"] = True
    path = functions_file(tmp_path, valkey_url)
    async with running(FileCatalog(str(path)), valkey_url, path) as pair:
        yield pair


async def test_the_list_shows_every_function_with_its_bus_state(
    console: tuple[Api, Transport],
) -> None:
    api, _ = console
    # When the functions are listed
    status, body = await api.call("GET", "/api/v1/functions")
    # Then both functions of the file are there, read-only (no cluster), with bus figures
    assert status == 200
    assert body["mode"] == "file" and body["writable"] is False
    rows = {f["name"]: f for f in body["functions"]}
    assert set(rows) == {"ping", "flaky"}
    assert rows["ping"]["topic"] == "test" and rows["ping"]["bus"]["dead"] == 0


async def test_invoke_over_http_and_as_a_payload_answers_pong(
    console: tuple[Api, Transport],
) -> None:
    api, _ = console
    http = {
        "http": {"method": "GET", "path": "/test/hello?x=1", "headers": {"Accept": "text/plain"}}
    }
    status, body = await api.call("POST", FN + "/invoke", name="ping", json=http)
    assert (status, body["outcome"], body["status"], body["body"]) == (200, "http", 200, "pong")
    assert body["duration_ms"] > 0
    status, body = await api.call("POST", FN + "/invoke", name="ping", json={"payload": "hi"})
    assert (status, body["outcome"], body["reply"]) == (200, "reply", "pong")


async def test_an_error_reply_is_returned_as_data(console: tuple[Api, Transport]) -> None:
    api, _ = console
    status, body = await api.call("POST", FN + "/invoke", name="flaky", json={"payload": 1})
    assert status == 200 and body["outcome"] == "error"
    assert "failing on purpose" in body["error"]["message"]


async def test_a_dead_letter_is_listed_replayed_and_handled(console: tuple[Api, Transport]) -> None:
    api, transport = console
    from kubefuncs import wire

    # Given an event the function fails on, dead-lettered after its one attempt
    await transport.publish("flaky", wire.encode(wire.make("flaky", {"order": 7})))

    async def dead() -> bool:
        return (
            len((await api.call("GET", FN + "/dead-letters", name="flaky"))[1]["dead_letters"]) == 1
        )

    await eventually(dead)
    _, body = await api.call("GET", FN + "/dead-letters", name="flaky")
    letter = body["dead_letters"][0]
    assert letter["payload"] == {"order": 7} and "failing on purpose" in letter["reason"]
    # When the function is fixed and the dead letter replayed by id
    handlers.FAILING["on"] = False
    status, body = await api.call(
        "POST", FN + "/dead-letters", name="flaky", json={"ids": [letter["id"]]}
    )
    assert (status, body["replayed"]) == (200, 1)

    # Then the function handles it and the dead letters are empty
    async def handled() -> bool:
        return {"order": 7} in handlers.SEEN

    await eventually(handled)
    _, body = await api.call("GET", FN + "/dead-letters", name="flaky")
    assert body["dead_letters"] == []


async def test_purge_removes_every_dead_letter(console: tuple[Api, Transport]) -> None:
    api, transport = console
    from kubefuncs import wire

    for i in range(3):
        await transport.publish("flaky", wire.encode(wire.make("flaky", i)))

    async def three() -> bool:
        _, body = await api.call("GET", "/api/v1/functions")
        return {f["name"]: f for f in body["functions"]}["flaky"]["bus"]["dead"] == 3

    await eventually(three)
    status, body = await api.call("DELETE", FN + "/dead-letters", name="flaky")
    assert (status, body["purged"]) == (200, 3)


async def test_metrics_count_the_invocations(console: tuple[Api, Transport]) -> None:
    api, _ = console
    for _ in range(5):
        await api.call("POST", FN + "/invoke", name="ping", json={"payload": None})

    async def counted() -> bool:
        _, body = await api.call("GET", FN + "/metrics", name="ping", params={"window": "1m"})
        return any(p["invocations_per_s"] > 0 for p in body["points"])

    await eventually(counted)
    _, body = await api.call("GET", FN, name="ping")
    assert body["spec"]["routes"][0]["prefix"] == "/test/"
    assert body["source"]["handler"] == "example.ping:pong"


@pytest.mark.parametrize(
    ("method", "route", "kwargs", "status", "error"),
    [
        ("GET", FN, {}, 404, "not_found"),
        ("POST", FN + "/invoke", {"data": b"{not json"}, 400, "bad_body"),
        ("POST", FN + "/invoke", {"json": [1]}, 400, "bad_body"),
        ("POST", FN + "/invoke", {"json": {"http": {"path": "no-slash"}}}, 400, "bad_body"),
        ("POST", FN + "/invoke", {"json": {"payload": 1, "timeout_s": -1}}, 400, "bad_body"),
        ("POST", FN + "/invoke", {"data": b"\xff\xfe"}, 400, "bad_body"),
        ("POST", FN + "/invoke", {"data": b"[" * 200_000}, 400, "bad_body"),
        ("POST", FN + "/invoke", {"data": b"x" * 300_000}, 413, "request_entity_too_large"),
        (
            "POST",
            FN + "/invoke",
            {
                "data": b"a: &x [1]\nb: *x\n",
                "headers": {**WRITER, "Content-Type": "application/yaml"},
            },
            400,
            "bad_body",
        ),
        ("GET", FN + "/metrics", {"params": {"window": "15 minutes"}}, 400, "bad_window"),
        ("GET", FN + "/metrics", {"params": {"window": "9h"}}, 400, "bad_window"),
        ("GET", FN + "/dead-letters", {"params": {"limit": "0"}}, 400, "bad_limit"),
        ("POST", FN + "/dead-letters", {"json": {"ids": "all"}}, 400, "bad_body"),
        ("POST", "/api/v1/functions", {"json": {"name": "x"}}, 409, "read_only"),
        ("DELETE", FN, {}, 409, "read_only"),
    ],
)
async def test_bad_input_is_a_4xx_with_a_reason(
    console: tuple[Api, Transport], method: str, route: str, kwargs: dict, status: int, error: str
) -> None:
    api, _ = console
    name = "nope" if status == 404 else "ping"
    got, body = await api.call(method, route, name=name, **kwargs)
    assert (got, body["error"]) == (status, error)
    assert body["message"]


async def test_auth_needs_a_key_and_writes_need_the_write_role(
    console: tuple[Api, Transport],
) -> None:
    api, _ = console
    status, body = await api.call("GET", "/api/v1/functions", headers={})
    assert (status, body["error"]) == (401, "unauthorized")
    status, body = await api.call(
        "GET", "/api/v1/functions", headers={"X-Api-Key": "wrong-key-123"}
    )
    assert status == 401
    assert (await api.call("GET", "/api/v1/functions", headers=READER))[0] == 200
    status, body = await api.call("POST", FN + "/invoke", name="ping", headers=READER, json={})
    assert (status, body["error"]) == (403, "forbidden") and "write role" in body["message"]
    status, _ = await api.call("GET", "/api/v1/openapi.json", headers={})
    assert status == 200


async def test_an_async_invoke_answers_a_call_id_then_the_reply(
    console: tuple[Api, Transport],
) -> None:
    api, _ = console
    # When ping is invoked in the background
    body = {"payload": "hi", "async": True}
    status, call = await api.call("POST", FN + "/invoke", name="ping", json=body)
    assert status == 202 and call["status"] == "pending"

    # Then the call's outcome is the reply, once done
    async def done() -> bool:
        _, got = await api.call("GET", "/api/v1/calls/{call_id}", call_id=call["call_id"])
        return bool(got["status"] == "done")

    await eventually(done)
    _, got = await api.call("GET", "/api/v1/calls/{call_id}", call_id=call["call_id"])
    assert got["http_status"] == 200 and got["result"]["reply"] == "pong"
    status, missing = await api.call("GET", "/api/v1/calls/{call_id}", call_id="nope")
    assert (status, missing["error"]) == (404, "not_found")
