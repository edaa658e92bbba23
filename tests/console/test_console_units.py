"""Pure parts of the console: the document against the app's routes, figures from
Prometheus text, settings from the environment."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from kubefuncs.functl.console import ServeSettings, create_app, figures, openapi
from kubefuncs.functl.console.catalog import FileCatalog
from kubefuncs.functl.console.settings import parse_keys
from kubefuncs.functl.errors import UsageError

METHODS = {"get", "put", "post", "delete", "patch"}


def app_routes() -> set[tuple[str, str]]:
    app = create_app(ServeSettings(no_auth=True), FileCatalog("x.yaml"), bus_url="memory://")
    return {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/")
        and r.method != "HEAD"
    }


def test_every_route_is_in_the_document_and_every_documented_route_exists() -> None:
    documented = {
        (method, path)
        for path, item in openapi.DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }
    assert app_routes() == documented


def test_every_schema_of_the_document_is_valid_json_schema_2020_12() -> None:
    assert openapi.DOCUMENT["openapi"].startswith("3.1")
    for schema in openapi.DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_operation_answers_401_json_and_has_an_id() -> None:
    ids = []
    for path, item in openapi.DOCUMENT["paths"].items():
        for method, op in ((m, o) for m, o in item.items() if m in METHODS):
            ids.append(op["operationId"])
            if path != "/api/v1/openapi.json":
                assert "401" in op["responses"], (method, path)
    assert len(ids) == len(set(ids))


TEXT = """
# TYPE kubefuncs_invocations counter
kubefuncs_invocations_total{{function="f",outcome="ok"}} {ok}
kubefuncs_invocations_total{{function="f",outcome="error_reply"}} {err}
# TYPE kubefuncs_duration_seconds histogram
kubefuncs_duration_seconds_bucket{{function="f",le="0.01"}} {fast}
kubefuncs_duration_seconds_bucket{{function="f",le="0.1"}} {all}
kubefuncs_duration_seconds_bucket{{function="f",le="+Inf"}} {all}
kubefuncs_duration_seconds_count{{function="f"}} {all}
kubefuncs_duration_seconds_sum{{function="f"}} 1
# TYPE kubefuncs_cold_start_seconds gauge
kubefuncs_cold_start_seconds{{function="f"}} 0.4
"""


def sample(t: float, ok: int, err: int, fast: int, texts: int = 1) -> figures.Sample:
    text = TEXT.format(ok=ok, err=err, fast=fast, all=ok + err)
    p = figures.parse([text] * texts, "f")
    return figures.Sample(t, p["outcomes"], p["buckets"], p["cold_start_s"], p["in_flight"])


def test_rates_and_quantiles_between_two_samples() -> None:
    # Given 100 calls in 10 s, 10 of them errors, 50 under 10 ms and the rest under 100 ms
    point = figures.point(sample(0, 0, 0, 0), sample(10, 90, 10, 50))
    # Then the rates and the interpolated quantiles follow
    assert point["invocations_per_s"] == 10.0 and point["errors_per_s"] == 1.0
    assert point["p50_ms"] == pytest.approx(10.0)
    assert point["p99_ms"] == pytest.approx(10 + 90 * (49 / 50))
    assert point["cold_start_s"] == 0.4


def test_pods_are_summed_and_a_restart_counts_from_zero() -> None:
    before, after = sample(0, 100, 0, 100, texts=2), sample(1, 5, 0, 5, texts=2)
    assert before.outcomes["ok"] == 200
    assert figures.point(before, after)["invocations_per_s"] == 10.0


def test_garbage_metrics_text_is_no_data() -> None:
    assert figures.parse(["not prometheus {{{", ""], "f")["outcomes"] == {}
    assert figures.quantile(0.5, ()) is None


def test_the_ring_keeps_its_capacity_and_forgets_gone_functions() -> None:
    rings = figures.Rings(3)
    for t in range(5):
        rings.add("f", sample(t, t, 0, t))
    assert len(rings.series("f", 0)) == 2
    rings.keep([])
    assert rings.latest("f") is None


def test_api_keys_carry_a_role() -> None:
    keys = parse_keys("ops=abcdefgh12:write, viewer=ijklmnop34 ,x=qrstuvwx:read")
    assert keys == {
        "abcdefgh12": ("ops", "write"),
        "ijklmnop34": ("viewer", "read"),
        "qrstuvwx": ("x", "read"),
    }


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"FUNCTL_SERVE_API_KEYS": "short=abc:write"}, "at least 8"),
        ({"FUNCTL_SERVE_JWT_SECRET": "tiny"}, "at least 32 bytes"),
        ({"FUNCTL_SERVE_SCRAPE_S": "often"}, "FUNCTL_SERVE_SCRAPE_S"),
        ({"FUNCTL_SERVE_NO_AUTH": "maybe"}, "true or false"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        ServeSettings.from_env(env)


def test_a_server_without_credentials_refuses_to_start() -> None:
    with pytest.raises(UsageError, match="FUNCTL_SERVE_API_KEYS"):
        ServeSettings.from_env({}).check()


def test_the_docs_carry_the_reference_generated_from_the_document() -> None:
    from pathlib import Path

    from kubefuncs.functl.console import reference

    doc = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text()
    assert reference.markdown() in doc, "run python -m kubefuncs.functl.console.reference"


class Broken(FileCatalog):
    def functions(self) -> list:  # type: ignore[type-arg]
        raise RuntimeError("a bug")


async def test_a_bug_is_a_json_500_not_a_dropped_connection() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(ServeSettings(no_auth=True), Broken("x.yaml"), bus_url="memory://")
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/v1/functions")
        assert response.status == 500
        assert (await response.json())["error"] == "internal"
