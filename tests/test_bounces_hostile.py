"""Bounces from hostile senders: text shaped to make reading slow is still read in linear time.

The bounce mailbox takes mail from anyone. Each case below is a message of about
``MAX_PARSE_BYTES`` (2 MB) shaped against one part of the reader: a regex that rescanned a long
run from each of its characters, or a loop that re-read the whole notice once per recipient.
Before the fixes each took from several minutes to hours (far past the suite's timeout); now each
takes about a second. No test measures time: a regression shows as the suite's timeout, and
every test checks what was read. The second half checks that the linear rewrites of two regexes
answer exactly as the quadratic originals did (on inputs short enough for those).
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import _bounce_parse, _bounce_text
from smtpkit._bounce_mime import Part
from smtpkit.bounces import MAX_PARSE_BYTES, parse_bounce, read_bounces

HEAD = (b"From: MAILER-DAEMON@mx.example.net\nTo: bounces+t1@example.com\n"
        b"Subject: Undelivered Mail Returned to Sender\n\n")
ROOM = MAX_PARSE_BYTES - 4096  # what a case may fill, leaving room for its head and tail


def repeat(unit: bytes, room: int = ROOM) -> bytes:
    return unit * (room // len(unit))


def numbered(template: bytes, room: int = ROOM) -> list[bytes]:
    """``template % i`` for i = 0, 1, ... while the total fits in ``room``."""
    lines: list[bytes] = []
    size = 0
    while size + len(template) + 8 < room:
        lines.append(template % len(lines))
        size += len(lines[-1])
    return lines


def one_line_of_addresses() -> tuple[bytes, int]:
    addresses = numbered(b"user%d@example.com ")
    return HEAD + b"These recipients failed: " + b"".join(addresses) + b"\n", len(addresses)


def lines_of_addresses() -> tuple[bytes, int]:
    lines = numbered(b"user%d@example.com\n")
    return HEAD + b"".join(lines), len(lines)


def aliases_far_below() -> tuple[bytes, int]:
    half = ROOM // 2
    failed = numbered(b"<user%d@example.com>: 550 user unknown\n", half)
    # "(expanded from" lines far from any failed line: each looked for its alias among all hits
    originals = numbered(b"(expanded from: <orig%d@example.com>)\n\n\n", half)
    raw = HEAD + b"".join(failed) + b"\n\n\n" + b"".join(originals)
    return raw, len(failed) + len(originals)


def dsn_with_a_long_notice() -> tuple[bytes, int]:
    blocks = numbered(b"Final-Recipient: rfc822; user%d@example.com\nAction: failed\n"
                      b"Status: 5.0.0\n\n", ROOM // 2)
    notice = repeat(b"x\n", ROOM // 2)  # no recipient named: each was looked for in every line
    raw = (b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: failure\n"
           b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
           b"boundary=B\n\n--B\nContent-Type: text/plain\n\n" + notice + b"\n--B\n"
           b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
           + b"".join(blocks) + b"--B--\n")
    return raw, len(blocks)


def html(body: bytes) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\n"
            b"Subject: Undelivered Mail\nContent-Type: text/html\n\n"
            b"<p>Delivery to ann@example.net failed: user unknown</p>" + body)


# (message, how many records, a recipient that must be among them)
SHAPES: list[object] = [
    pytest.param(lambda: (HEAD + b"Delivery to ann@example.net failed: 550 user unknown\n"
                          + repeat(b"-") + b"\n", 1), "ann@example.net", id="run-of-dashes"),
    pytest.param(lambda: (HEAD + b"failed: ann@example.net (user unknown)\n"
                          + repeat(b"a.") + b"@\n", 1), "ann@example.net", id="run-of-a-dot"),
    pytest.param(lambda: (HEAD + b"failed: ann@example.net (user unknown) near "
                          + repeat(b"b" * 60 + b".") + b"1\n", 1), "ann@example.net",
                 id="long-host-name-without-tld"),
    pytest.param(lambda: (HEAD + b"failed: ann@example.net (user unknown) at host "
                          + repeat(b"a.") + b"\n", 1), "ann@example.net", id="host-run"),
    pytest.param(one_line_of_addresses, "user7@example.com", id="one-line-of-addresses"),
    pytest.param(lines_of_addresses, "user7@example.com", id="lines-of-addresses"),
    pytest.param(aliases_far_below, "orig7@example.com", id="aliases-far-below"),
    pytest.param(dsn_with_a_long_notice, "user7@example.com", id="dsn-with-long-notice"),
    pytest.param(lambda: (html(repeat(b"<script>")), 1), "ann@example.net",
                 id="html-unclosed-scripts"),
    pytest.param(lambda: (b"From: ann@example.com\nTo: bounces@example.com\n"
                          b"Subject: Out of office\nIn-Reply-To: " + repeat(b"<a")
                          + b"\n\nI am away.\n", 1), "ann@example.com",
                 id="in-reply-to-run-of-brackets"),
]


@pytest.mark.parametrize(("make", "recipient"), SHAPES)
def test_hostile_message_is_read_in_linear_time(
    make: Callable[[], tuple[bytes, int]], recipient: str
) -> None:
    raw, expected = make()
    assert MAX_PARSE_BYTES // 2 < len(raw) <= MAX_PARSE_BYTES
    records = parse_bounce(raw)
    assert len(records) == expected
    assert recipient in {r.recipient for r in records}
    assert all(r.kind != "unparsed" for r in records)


def test_one_mail_of_dashes_in_a_maildir_does_not_stall_read_bounces(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(b"From: someone@internet.example\nTo: bounces@shop.example\nSubject: hi\n\n"
            + repeat(b"-") + b"\n")
    frame = read_bounces(tmp_path / "Maildir")
    assert frame["kind"].tolist() == ["unparsed"]
    assert frame["reason"].tolist() == ["not_a_bounce"]


def test_header_folded_over_many_lines_is_read_in_linear_time() -> None:
    # The reader itself has no size limit (parse_bounce cuts at MAX_PARSE_BYTES first)
    lines = 4 * MAX_PARSE_BYTES // 3
    part = Part(b"Subject: x\nX-Long: a\n" + b" b\n" * lines + b"\nbody\n")
    assert part.get("x-long") == "a" + " b" * lines
    assert part.body == b"body\n"


def test_report_field_folded_over_many_lines_is_read_in_linear_time() -> None:
    lines = 4 * MAX_PARSE_BYTES // 3
    part = Part(b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
                b"Final-Recipient: rfc822; ann@example.net\nDiagnostic-Code: smtp; 550\n"
                + b" b\n" * lines + b"Status: 5.1.1\n")
    blocks = _bounce_parse._field_blocks(part)
    assert blocks[1]["diagnostic-code"] == "smtp; 550" + " b" * lines
    assert blocks[1]["status"] == "5.1.1"


# --- the linear rewrites answer as the originals did ---------------------------------------

OLD_REMOTE = re.compile(
    r"\bhost\s+([A-Za-z0-9][\w.-]*\.[A-Za-z]{2,})|\b([A-Za-z0-9][\w.-]*\.[A-Za-z]{2,})"
    r"\s*\[\d{1,3}(?:\.\d{1,3}){3}\]",
)
OLD_CUT = re.compile(r"-{2,} ?(?:original|returned) (?:message|mail) ?-{2,}", re.IGNORECASE)
OLD_SKIPPED = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")


def remote(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return (match.group(1) or match.group(2)) if match else None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "Z", "7", "_", ".", "-", " ", "\t", "host", "ab", "[",
                                 "]", "1.2.3.4", " [10.0.0.1]", "é", "mx.example.com"]),
                max_size=14).map("".join))
def test_remote_mta_pattern_answers_as_the_quadratic_one(text: str) -> None:
    assert remote(_bounce_parse._REMOTE_IN_TEXT, text) == remote(OLD_REMOTE, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["-", "--", " ", "Original", " message", " Mail", "returned",
                                 "x", "\n"]), max_size=12).map("".join))
def test_cut_marker_is_found_where_the_quadratic_pattern_found_it(text: str) -> None:
    old = OLD_CUT.search(text)
    new = _bounce_text._CUT_PHRASES.search(text)
    assert (new.span() if new else None) == (old.span() if old else None)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["<script>", "<SCRIPT ", "</script>", "</Script >", "<style>",
                                 "</style>", "<head>", "</head>", "<header>", "x", " ", "<",
                                 "</scrip", "\n"]), max_size=12).map("".join))
def test_skipped_elements_are_dropped_as_the_quadratic_regex_did(markup: str) -> None:
    assert _bounce_text._drop_skipped_elements(markup) == OLD_SKIPPED.sub(" ", markup)
