"""Route files and route matching (pure)."""

from __future__ import annotations

import pytest
from kubefuncs.errors import ConfigError
from kubefuncs.gateway import from_dicts, loads
from kubefuncs.gateway.cors import CorsPolicy
from kubefuncs.gateway.ratelimit import RateLimit

EXTENDED = """
routes:
  /test/: test
  /orders/:
    topic: orders
    methods: [post, GET]
    timeout_s: 5
    async: true
    auth: api_key
    cors: {origins: [https://shop.example]}
    rate_limit: {rate: 2, burst: 4}
publish: {topics: [orders, audit], auth: jwt}
"""


def test_the_kubefuncs_style_maps_prefixes_to_topics() -> None:
    # Given a routes file in the kubefuncs style
    table = loads("/test/: test\n/api/v1/: api\n", default_timeout_s=7)
    # When a path is matched
    route = table.match("/test/hello")
    # Then the prefix leads to its topic with the defaults
    assert route is not None and route.topic == "test"
    assert route.methods is None and route.timeout_s == 7 and route.auth == "none"
    assert table.publish.topics == frozenset()


def test_the_extended_form_reads_every_option() -> None:
    # Given the extended form
    table = loads(EXTENDED)
    # When the route is looked up
    route = table.match("/orders/42")
    # Then each option is parsed
    assert route is not None
    assert route.methods == frozenset({"GET", "POST"})
    assert (route.timeout_s, route.async_, route.auth) == (5.0, True, "api_key")
    assert route.cors == CorsPolicy(frozenset({"https://shop.example"}))
    assert route.rate_limit == RateLimit(2.0, 4, "client")
    assert table.publish.topics == frozenset({"orders", "audit"})
    assert table.publish.auth == "jwt"


@pytest.mark.parametrize(
    ("path", "topic"),
    [
        ("/test", "test"),
        ("/test/", "test"),
        ("/test/a/b", "test"),
        ("/testing", "root"),
        ("/test/deep/x", "deep"),
        ("/test/deeper", "test"),
        ("/", "root"),
    ],
)
def test_the_longest_whole_segment_prefix_wins(path: str, topic: str) -> None:
    # Given nested prefixes and a catch-all
    table = loads("/: root\n/test/: test\n/test/deep: deep\n")
    # When a path is matched / Then the longest prefix covering whole segments wins
    route = table.match(path)
    assert route is not None and route.topic == topic


def test_no_route_matches_outside_every_prefix() -> None:
    assert loads("/test/: test").match("/other") is None


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("/x/: {topic: 'bad topic'}", "routes./x/.topic", "topic name"),
        ("/x/: {topic: t, methods: [FETCH]}", "routes./x/.methods", "FETCH"),
        ("/x/: {topic: t, timeout_s: 0}", "routes./x/.timeout_s", "> 0"),
        ("/x/: {topic: t, auth: magic}", "routes./x/.auth", "api_key"),
        ("/x/: {topic: t, rate_limit: {rate: -1}}", "routes./x/.rate_limit.rate", "> 0"),
        ("/x/: {topic: t, cors: {origins: 5}}", "routes./x/.cors.origins", "string"),
        ("/x/: {topic: t, colour: red}", "routes./x/", "unknown keys ['colour']"),
        ("/metrics/x: t", "routes./metrics/x", "serves itself"),
        ("routes: {x/: t}", "routes.x/", "starting with '/'"),
        ("publish: {topics: [ok, 'no way']}", "publish.topics", "topic name"),
        ("[1, 2]", "routes.yaml", "mapping"),
        ("routes: {/a/: a}\nextra: 1", "routes.yaml", "unknown keys ['extra']"),
    ],
)
def test_mistakes_name_the_file_and_field(text: str, where: str, problem: str) -> None:
    # Given a routes file with one mistake / When it is loaded
    with pytest.raises(ConfigError) as raised:
        loads(text, "routes.yaml")
    # Then the error names where and what
    assert where in str(raised.value) and problem in str(raised.value)


def test_two_spellings_of_one_prefix_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicates"):
        loads("/a/: a\n/a: b\n")


def test_functions_yaml_routes_become_a_table() -> None:
    # Given the route dicts of kubefuncs.functl.spec.Spec.routes()
    items = [
        {
            "prefix": "/hello/",
            "topic": "hello",
            "methods": ["GET"],
            "timeout_s": 10.0,
            "async": False,
            "auth": None,
            "cors": True,
            "rate_limit": 5,
        }
    ]
    # When they are turned into a table
    table = from_dicts(items)
    route = table.match("/hello/x")
    # Then the gateway reads the same options as from its own file
    assert route is not None and route.methods == frozenset({"GET"})
    assert route.cors is not None and route.rate_limit == RateLimit(5.0, 5)


def test_allow_lists_the_methods_and_options_with_cors() -> None:
    route = loads("/x/: {topic: t, methods: [POST, GET], cors: true}").match("/x/")
    assert route is not None and route.allow_header() == "GET, OPTIONS, POST"
