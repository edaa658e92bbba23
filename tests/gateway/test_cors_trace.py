"""CORS decisions and W3C trace context (pure)."""

from __future__ import annotations

import pytest
from kubefuncs.errors import ConfigError
from kubefuncs.gateway.cors import CorsPolicy, parse_cors, preflight_headers, response_headers
from kubefuncs.gateway.trace import child_traceparent

SHOP = CorsPolicy(frozenset({"https://shop.example"}), frozenset({"content-type"}), 60)


def test_a_preflight_from_an_allowed_origin_is_answered() -> None:
    headers = preflight_headers(SHOP, "https://shop.example", "POST", "Content-Type", {"POST"})
    assert headers == {
        "Access-Control-Allow-Origin": "https://shop.example",
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Max-Age": "60",
    }


@pytest.mark.parametrize(
    ("origin", "method", "asked"),
    [
        ("https://evil.example", "POST", None),
        ("https://shop.example", "DELETE", None),
        ("https://shop.example", "POST", "x-secret"),
    ],
)
def test_a_preflight_outside_the_policy_is_refused(origin: str, method: str, asked: str) -> None:
    assert preflight_headers(SHOP, origin, method, asked, {"POST"}) is None


def test_any_origin_gets_a_star_and_exposed_headers() -> None:
    policy = parse_cors(True, "cors")
    assert policy is not None
    headers = response_headers(policy, "https://a.example")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Call-Id" in headers["Access-Control-Expose-Headers"]
    assert response_headers(policy, None) == {}


def test_credentials_need_explicit_origins() -> None:
    with pytest.raises(ConfigError, match="explicit origins"):
        parse_cors({"credentials": True}, "cors")


def test_a_valid_traceparent_keeps_its_trace_and_gets_a_new_parent() -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    out, accepted = child_traceparent(incoming)
    assert accepted and out.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert out.endswith("-01") and out.split("-")[2] != "b7ad6b7169203331"


@pytest.mark.parametrize(
    "incoming",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_a_missing_or_invalid_traceparent_starts_a_trace(incoming: str | None) -> None:
    out, accepted = child_traceparent(incoming)
    assert not accepted and len(out) == 55 and out.endswith("-01")
