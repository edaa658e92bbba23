"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): the table
lists the functions, a test invocation shows pong, a dead letter is replayed, a deploy with
a bad field shows the error next to it. Screenshots go to build/screenshots/."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from kubefuncs import wire
from kubefuncs.functl.console import ServeSettings
from kubefuncs.functl.console.catalog import SPEC_ANNOTATION, ClusterCatalog, FileCatalog
from kubefuncs.functl.kube import Cluster
from kubefuncs.functl.naming import Target

from tests.console import handlers
from tests.console.console_fixtures import READ_KEY, Api, eventually, functions_file, running
from tests.functl.functl_kubeapi import FakeKube, kubeconfig
from tests.functl.functl_schemas import keda_crds_or_skip, server_validator

pytestmark = pytest.mark.real
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
OPEN = ServeSettings(no_auth=True, scrape_s=0.5)
TIMEOUT_MS = 15000

if TYPE_CHECKING := False:
    from playwright.async_api import Page


def chromium_or_skip() -> None:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} not found: .ci/setup installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not found")


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    chromium_or_skip()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = await browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(TIMEOUT_MS)
            yield tab
        finally:
            await browser.close()


def url(api: Api, fragment: str = "") -> str:
    return str(api.client.make_url("/")) + fragment


async def test_table_invoke_and_dead_letter_replay(
    page: Page, valkey_url: str, tmp_path: Path
) -> None:
    handlers.FAILING["on"] = True
    path = functions_file(tmp_path, valkey_url)
    async with running(FileCatalog(str(path)), valkey_url, path, OPEN) as (api, transport):
        # The table lists the functions of the file, and updates live
        await page.goto(url(api))
        await page.locator("#functions tr[data-name=ping]").wait_for()
        assert await page.locator("#functions tr[data-name=flaky]").count() == 1
        await page.locator("#mode", has_text="read-only").wait_for()
        await page.screenshot(path=SHOTS / "functions.png")

        # A test invocation of ping over HTTP shows pong
        await page.locator("#functions tr[data-name=ping] a").click()
        await page.locator("#invoke-form input[name=path]").fill("/test/hello")
        await page.locator("#invoke-form button[type=submit]").click()
        await page.locator("#invoke-body", has_text="pong").wait_for()
        assert await page.locator("#invoke-status").text_content() == "200"
        await page.wait_for_timeout(4500)  # a few polls, so the charts have points
        await page.screenshot(path=SHOTS / "function.png", full_page=True)

        # A dead letter of flaky is replayed once the function works again
        await transport.publish("flaky", wire.encode(wire.make("flaky", {"order": 42})))
        await page.goto(url(api, "#/f/flaky"))

        async def listed() -> bool:
            await page.reload()
            row = page.locator("#dead-letters tr[data-id]")
            try:
                await row.first.wait_for(timeout=1000)
            except Exception:
                return False
            return True

        await eventually(listed)
        await page.screenshot(path=SHOTS / "dead-letters.png", full_page=True)
        handlers.FAILING["on"] = False
        await page.locator("#dead-letters button.replay").first.click()
        await page.locator("#dead-letters", has_text="no dead letters").wait_for()

        async def handled() -> bool:
            return {"order": 42} in handlers.SEEN

        await eventually(handled)


@asynccontextmanager
async def cluster_console(valkey_url: str, tmp_path: Path) -> AsyncIterator[tuple[Api, FakeKube]]:
    """The console over the Kubernetes API stand-in (the deploy tests' cluster)."""
    keda_crds_or_skip()
    kube = FakeKube(validator=server_validator)
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig("https://fake.invalid:6443", "fns"))
    cluster = Cluster.connect("fns", kubeconfig=str(config), transport=kube.transport())
    base = 'version: 1\nbus: {url: "valkey://valkey:6379/0"}\nfunctions: []\n'
    catalog = ClusterCatalog(cluster, Target("fns", "demo", "img:1"), base, "functions.yaml")
    path = functions_file(tmp_path, valkey_url)
    async with running(catalog, valkey_url, path, OPEN) as (api, _):
        yield api, kube


def deployed_spec(kube: FakeKube, name: str) -> dict[str, object]:
    deployment = kube.objects[("deployments", "fns", f"demo-{name}")]
    spec: dict[str, object] = json.loads(deployment["metadata"]["annotations"][SPEC_ANNOTATION])
    return spec


async def test_the_form_shows_each_error_next_to_its_field_and_deploys(
    page: Page, valkey_url: str, tmp_path: Path
) -> None:
    async with cluster_console(valkey_url, tmp_path) as (api, kube):
        # Given the deploy form filled in with min replicas -1 and an unknown advanced field
        await page.goto(url(api))
        await page.locator("#new-function").click()
        await page.get_by_label("name", exact=True).fill("orders")
        await page.get_by_label("topic", exact=True).fill("orders")
        await page.get_by_label("handler (module:function)").fill("shop.orders:handle")
        await page.get_by_label("route path").fill("/orders/")
        await page.get_by_label("methods (comma separated; empty: all)").fill("POST")
        await page.get_by_label("min replicas").fill("-1")
        await page.get_by_label("max replicas").fill("3")
        await page.locator("#f-advanced").fill("labels: {team: shop}\ncolour: red\n")
        # When it is deployed
        await page.locator("#deploy").click()
        # Then the range error is inside the min field's box, and that input is marked invalid
        box = page.locator('.field[data-field="scaling.min"]')
        issue = box.locator('.field-error [data-path="functions[0].scaling.min"]')
        await issue.wait_for()
        assert "0 to 1000" in (await issue.text_content() or "")
        assert await page.locator("#f-scaling-min").get_attribute("aria-invalid") == "true"
        assert await page.locator("#f-scaling-max").get_attribute("aria-invalid") is None
        # and the error of no form field is at the top of the form
        top = page.locator("#deploy-form > #deploy-issues li", has_text="colour")
        await top.wait_for()
        await page.screenshot(path=SHOTS / "deploy-error.png", full_page=True)
        assert ("deployments", "fns", "demo-orders") not in kube.objects

        # When both are fixed, the deploy creates the function and opens its page
        await page.get_by_label("min replicas").fill("1")
        await page.locator("#f-advanced").fill("labels: {team: shop}\nscaling: {min: 7}\n")
        await page.locator("#deploy").click()
        await page.locator("h1", has_text="orders").wait_for()
        spec = deployed_spec(kube, "orders")
        # the form won over the advanced part where both set a field
        assert spec["scaling"] == {"min": 1, "max": 3}
        assert spec["labels"] == {"team": "shop"}
        assert spec["routes"] == [{"path": "/orders/", "methods": ["POST"]}]
        assert spec["handler"] == "shop.orders:handle"


async def test_edit_prefills_the_form_and_shows_errors_next_to_the_field(
    page: Page, valkey_url: str, tmp_path: Path
) -> None:
    async with cluster_console(valkey_url, tmp_path) as (api, kube):
        # Given a function deployed through the API
        body = {
            "name": "orders",
            "topic": "orders",
            "handler": "shop.orders:handle",
            "routes": [{"path": "/orders/", "async": True, "cors": True}, "/more/"],
            "scaling": {"min": 2, "max": 4, "target": 9, "cooldown_s": 60},
            "retry": {"max_attempts": 3},
            "timeout_s": 12,
        }
        status, reply = await api.call("POST", "/api/v1/functions", json=body)
        assert status == 201, reply
        # When its page is opened, the form holds its fields and the advanced part the rest
        await page.goto(url(api, "#/f/orders"))
        await page.locator("#deploy-form").wait_for()
        assert await page.get_by_label("name", exact=True).input_value() == "orders"
        assert await page.get_by_label("min replicas").input_value() == "2"
        assert await page.get_by_label("target (waiting messages per replica)").input_value() == "9"
        assert await page.get_by_label("retry max_attempts").input_value() == "3"
        assert await page.get_by_label("timeout_s").input_value() == "12"
        assert await page.get_by_label("route path").input_value() == "/orders/"
        assert await page.get_by_label("async").input_value() == "true"
        advanced = await page.locator("#f-advanced").input_value()
        assert "cooldown_s: 60" in advanced and "/more/" in advanced and "cors: true" in advanced
        assert "max_attempts" not in advanced
        # And an update with a bad max shows the error next to max
        await page.get_by_label("max replicas").fill("0")
        await page.locator("#update").click()
        issue = page.locator('.field[data-field="scaling.max"] .field-error [data-path]')
        await issue.wait_for()
        assert await page.locator("#f-scaling-max").get_attribute("aria-invalid") == "true"
        await page.locator("#deploy-form").screenshot(path=SHOTS / "edit-error.png")
        # And a good update keeps what only the advanced part held
        await page.get_by_label("max replicas").fill("5")
        await page.locator("#update").click()
        await page.locator("#deploy-issues li.muted").wait_for()
        spec = deployed_spec(kube, "orders")
        assert spec["scaling"] == {"min": 2, "max": 5, "target": 9, "cooldown_s": 60}
        assert spec["routes"] == [{"path": "/orders/", "async": True, "cors": True}, "/more/"]


async def test_edit_of_an_image_function_shows_image_and_command(
    page: Page, valkey_url: str, tmp_path: Path
) -> None:
    async with cluster_console(valkey_url, tmp_path) as (api, kube):
        # Given a function that runs an image with a command
        body = {"name": "web", "topic": "web", "image": "img:2", "command": ["node", "s.js"]}
        status, reply = await api.call("POST", "/api/v1/functions", json=body)
        assert status == 201, reply
        # When its page is opened, the image choice is made and its fields filled in
        await page.goto(url(api, "#/f/web"))
        await page.locator("#deploy-form").wait_for()
        assert await page.locator("#runs-image").is_checked()
        assert await page.get_by_label("command (words separated by spaces)").input_value() == (
            "node s.js"
        )
        assert await page.get_by_label("handler (module:function)").is_hidden()
        # And an update with one more word posts the command as a list
        await page.get_by_label("command (words separated by spaces)").fill("node s.js --fast")
        await page.locator("#update").click()
        await page.locator("#deploy-issues li.muted").wait_for()
        assert deployed_spec(kube, "web")["command"] == ["node", "s.js", "--fast"]


async def test_the_text_mode_deploys_and_lists_the_errors(
    page: Page, valkey_url: str, tmp_path: Path
) -> None:
    async with cluster_console(valkey_url, tmp_path) as (api, kube):
        await page.goto(url(api))
        await page.locator("#new-function").click()
        await page.locator("#mode-text").check()
        bad = json.dumps(
            {
                "name": "orders",
                "handler": "shop.orders:handle",
                "topic": "orders",
                "scaling": {"min": -1},
            }
        )
        await page.locator("#deploy-text").fill(bad)
        await page.locator("#deploy").click()
        issue = page.locator('#deploy-issues li[data-path="functions[0].scaling.min"]')
        await issue.wait_for()
        assert "0" in (await issue.text_content() or "")
        # switching to the form carries the text over, and the error then goes next to min
        await page.locator("#mode-form").check()
        assert await page.get_by_label("min replicas").input_value() == "-1"
        await page.locator("#deploy").click()
        await page.locator('.field[data-field="scaling.min"] .field-error [data-path]').wait_for()
        # and a good one deploys and opens the function's page
        await page.locator("#mode-text").check()
        await page.locator("#deploy-text").fill(bad.replace("-1", "1"))
        await page.locator("#deploy").click()
        await page.locator("h1", has_text="orders").wait_for()
        assert ("deployments", "fns", "demo-orders") in kube.objects


async def test_the_dashboard_asks_for_an_api_key_and_then_shows_the_table(
    page: Page, valkey_url: str, tmp_path: Path
) -> None:
    path = functions_file(tmp_path, valkey_url)
    async with running(FileCatalog(str(path)), valkey_url, path) as (api, _):
        # Given a server that wants credentials, the dashboard asks for a key
        await page.goto(url(api))
        await page.locator("#login").wait_for()
        assert await page.locator("#functions tr[data-name]").count() == 0
        # When the read key is given, the table shows (and stays after a reload)
        await page.locator("#api-key").fill(READ_KEY)
        await page.locator("#login button").click()
        await page.locator("#functions tr[data-name=ping]").wait_for()
        await page.reload()
        await page.locator("#functions tr[data-name=ping]").wait_for()
        assert await page.locator("#login").is_hidden()
