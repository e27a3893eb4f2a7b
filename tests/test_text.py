"""The two functions every piece of remote text and every URL passes through before it is shown,
logged or sent (README "Trust boundaries")."""

from __future__ import annotations

import pytest

from common.text import one_line, redact_url


def test_one_line_is_bounded_and_single_line_whatever_it_is_given():
    assert one_line("x" * 10_000) == "x" * 199 + "…"
    assert len(one_line("a\nb" * 1_000_000, 50)) == 50  # a megabyte is cut before the regexes run
    assert one_line("down\r\n\tBcc: victim@example.com\u202e") == "down Bcc: victim@example.com"
    assert one_line(ValueError("bad")) == "bad"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@rpc.example.com:443", "https://***@rpc.example.com:443"),
        ("https://rpc.provider.io/0123456789abcdef", "https://rpc.provider.io/…"),
        ("https://rpc.provider.io/?apikey=s3cret", "https://rpc.provider.io/…"),
        ("redis://:pw-42@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("http://[::1]:26657", "http://[::1]:26657"),
        ("http://127.0.0.1:26657/", "http://127.0.0.1:26657"),
        ("not a url", "<unparseable URL>"),
        ("http://host:99999999", "<unparseable URL>"),
    ],
)
def test_redact_url_keeps_where_and_drops_every_secret(url, shown):
    assert redact_url(url) == shown
    for secret in ("pass", "0123456789abcdef", "s3cret", "pw-42"):
        assert secret not in redact_url(url)
