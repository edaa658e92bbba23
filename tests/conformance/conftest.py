"""The NSQ bus of the conformance tests: the nsqd double (with an nsqlookupd double) as a
process, since the functions under test are processes too; or the real nsqd/nsqlookupd of
``NSQD_TCP_ADDRESS``/``NSQD_HTTP_ADDRESS``/``NSQLOOKUPD_HTTP_ADDRESS``. One per session;
every test gets a URL with a topic prefix of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.report import Report, report_path
from tests.nsq.support import bus_url, real_nsq
from tests.nsq_double import NsqdProcess

NsqServer = tuple[str, str, str | None, bool]  # nsqd TCP, nsqd HTTP, lookupd HTTP, real


@pytest.fixture(scope="session")
def nsq_server() -> Iterator[NsqServer]:
    real = real_nsq()
    if real is not None:
        yield (*real, True)
        return
    with NsqdProcess(lookupd_http_port=0) as proc:
        yield proc.tcp_address, proc.http_address, proc.lookupd_http_address, False


@pytest.fixture(scope="session")
def conformance_report() -> Iterator[Report]:
    """What the conformance tests saw, merged into build/conformance.json at the end (the
    source of the table in docs/other-languages.md)."""
    report = Report()
    if real_nsq() is not None:
        report.nsq = "real nsqd"
    yield report
    report.write(report_path())


@pytest.fixture
def nsq_url(nsq_server: NsqServer) -> str:
    tcp, http, lookupd, real = nsq_server
    return bus_url(tcp=tcp, http=http, lookupd=lookupd, real=real)


@pytest.fixture(params=["valkey", "nsq"])
def bus(request: pytest.FixtureRequest) -> str:
    """A bus URL of each kind, for tests that run one body on both buses."""
    return str(request.getfixturevalue(f"{request.param}_url"))
