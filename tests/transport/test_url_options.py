"""Bus URL options: checked values, unknown names logged (not refused)."""

from __future__ import annotations

import pytest
from kubefuncs.errors import ConfigError
from kubefuncs.transport.valkey import ValkeyTransport


def test_bus_url_options_are_checked_and_unknown_ones_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigError, match="option block_ms must be a number, got 'x'"):
        ValkeyTransport("valkey://h/0?block_ms=x")
    with pytest.raises(ConfigError, match="visibility_timeout_s must be at least"):
        ValkeyTransport("valkey://h/0?visibility_timeout_s=0")
    t = ValkeyTransport("valkey://h/0?visiblity_timeout_s=5&prefix=p")
    assert (t.keys.prefix, t.visibility_timeout_s) == ("p", 30.0)
    assert "visiblity_timeout_s ignored" in caplog.text


def test_read_count_is_a_positive_number() -> None:
    assert ValkeyTransport("valkey://h/0?read_count=64").read_count == 64
    with pytest.raises(ConfigError, match="option read_count must be at least 1, got '0'"):
        ValkeyTransport("valkey://h/0?read_count=0")


@pytest.mark.parametrize("name", ["orders\n", "orders\r\n", "a b", "", "x" * 65, "t#ephemeral\n"])
def test_topic_and_channel_names_are_matched_whole(name: str) -> None:
    # Given a name with a trailing newline or another character no bus name may have
    # Then it is refused ("$" alone would have let "orders\n" through)
    from kubefuncs.transport import valid_name

    assert not valid_name(name)
    assert valid_name("orders") and valid_name("kf.r.abc#ephemeral")
