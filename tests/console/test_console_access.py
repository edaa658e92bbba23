"""Roles: API keys and HS256 JWTs, each mapped to read or write."""

from __future__ import annotations

import time

import pytest
from kubefuncs.functl.console.access import Access, Denied
from kubefuncs.functl.console.settings import ServeSettings
from kubefuncs.gateway.tokens import sign_hs256

SECRET = "s" * 40
SETTINGS = ServeSettings(api_keys={"reader-key-123": ("viewer", "read")}, jwt_secret=SECRET)


def bearer(**claims: object) -> dict[str, str]:
    # made when the tests are collected, which may be long before they run: a day's exp
    token = sign_hs256({"exp": int(time.time()) + 86400, **claims}, SECRET.encode())
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "need", "caller"),
    [
        ({"X-Api-Key": "reader-key-123"}, "read", ("viewer", "read")),
        (bearer(sub="ada", role="write"), "write", ("ada", "write")),
        (bearer(sub="bob"), "read", ("bob", "read")),
    ],
)
async def test_valid_credentials_get_their_role(
    headers: dict[str, str], need: str, caller: tuple[str, str]
) -> None:
    got = await Access(SETTINGS).check(headers, need)
    assert (got.name, got.role) == caller


@pytest.mark.parametrize(
    ("headers", "need", "status", "words"),
    [
        ({}, "read", 401, "authentication required"),
        ({"X-Api-Key": "not-a-key-000"}, "read", 401, "not valid"),
        ({"X-Api-Key": "reader-key-123"}, "write", 403, "write role"),
        (bearer(sub="bob"), "write", 403, "write role"),
        (bearer(sub="eve", role="admin"), "read", 403, "read or write"),
        ({"Authorization": "Bearer not.a.jwt"}, "read", 401, ""),
    ],
)
async def test_refusals_say_why(
    headers: dict[str, str], need: str, status: int, words: str
) -> None:
    with pytest.raises(Denied) as refused:
        await Access(SETTINGS).check(headers, need)
    assert refused.value.status == status and words in refused.value.message
