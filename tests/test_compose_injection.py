"""Header injection is impossible: every way a row value can reach a header, with every kind of
line break or control character, and encoded-words that decode to them (CVE-2024-6923 class).

A row that would put one of them into a header fails with reason ``unsafe_header`` (render and
check agree); a row that renders has exactly the headers the template defines, whatever its
values hold.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_compose_equivalence import mailbox

from smtpkit.compose import RowError, Template, check, render_message

SENDER = "Acme <news@acme.example>"
BASE_ROW = {"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "cid": "C1"}

# Every route from a column to a header, and the column it uses.
ROUTES = {
    "subject": ({"subject": "Hi {first_name}"}, "first_name"),
    "to-display-name": ({"to": "{first_name} {last_name}"}, "last_name"),
    "to-address": ({"to": "{first_name} <{work}>"}, "work"),
    "custom-header": ({"headers": {"X-Contact": "{cid}"}}, "cid"),
    "recipient": ({}, "email"),
    "recipient-normalized": ({}, "email_normalized"),
}

# CR/LF and friends: each must be refused anywhere in a header value.
CONTROLS = {
    "crlf-bcc": "\r\nBcc: victim@evil.example",
    "lf": "\nX-Injected: 1",
    "cr": "\rX-Injected: 1",
    "nul": "\x00",
    "tab": "\t",
    "vertical-tab": "\x0b",
    "form-feed": "\x0c",
    "file-separator": "\x1c",
    "escape": "\x1b[31m",
    "delete": "\x7f",
    "next-line-c1": "\x85",
    "c1-csi": "\x9b",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
}


def b64_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


# Encoded-words a lenient reader would decode to a line break or control character.
ENCODED = {
    "q-crlf": "=?utf-8?q?x=0D=0ABcc:_victim@evil.example?=",
    "q-lowercase-hex": "=?UTF-8?Q?x=0d=0aBcc:_victim@evil.example?=",
    "b-crlf": b64_word("x\r\nBcc: victim@evil.example"),
    "b-lf-latin1": b64_word("\nX-Injected: 1", "iso-8859-1"),
    "b-nul": b64_word("a\x00b"),
    "b-unpadded": "=?utf-8?b?eA0KQmNjOiB2QGUuZXhhbXBsZQ?=",
    "q-line-separator": "=?utf-8?q?a=E2=80=A8b?=",
    "language-tag": "=?utf-8*en?q?=0D=0A?=",
}


def template_for(route: str) -> Template:
    options, _ = ROUTES[route]
    base: dict[str, Any] = {"subject": "Hello", "text": "Body {first_name}", "sender": SENDER}
    return Template(**(base | options))


def row_with(route: str, value: str) -> dict[str, Any]:
    _, column = ROUTES[route]
    row = BASE_ROW | {"work": "ann@work.example"}
    if column in ("email", "email_normalized", "work"):
        value = "ann" + value + "@example.com"
    row[column] = value
    return row


@pytest.mark.parametrize("control", [pytest.param(v, id=k) for k, v in CONTROLS.items()])
@pytest.mark.parametrize("route", list(ROUTES))
def test_control_characters_never_reach_a_header(route: str, control: str) -> None:
    template, row = template_for(route), row_with(route, control)
    with pytest.raises(RowError) as caught:
        render_message(row, template)
    assert caught.value.reason == "unsafe_header"
    assert caught.value.field == ROUTES[route][1]
    problems = check(pd.DataFrame([row]), template)
    assert problems[["reason", "field"]].values.tolist() == [["unsafe_header", ROUTES[route][1]]]


@pytest.mark.parametrize("word", [pytest.param(v, id=k) for k, v in ENCODED.items()])
@pytest.mark.parametrize("route", ["subject", "to-display-name", "custom-header"])
def test_encoded_words_hiding_a_line_break_are_refused(route: str, word: str) -> None:
    with pytest.raises(RowError) as caught:
        render_message(row_with(route, "pre " + word + " post"), template_for(route))
    assert caught.value.reason == "unsafe_header"
    assert "encoded-word that decodes to a control character" in caught.value.detail


def test_an_encoded_word_split_across_two_columns_is_refused() -> None:
    template = Template(subject="{first_name}{last_name}", text="x", sender=SENDER)
    row = BASE_ROW | {"first_name": "=?utf-8?q?x=0D", "last_name": "=0ABcc:_v@evil.example?="}
    with pytest.raises(RowError) as caught:
        render_message(row, template)
    assert (caught.value.reason, caught.value.field) == ("unsafe_header", "first_name, last_name")


def test_addresses_with_encoded_words_are_refused() -> None:
    with pytest.raises(RowError) as caught:
        render_message(BASE_ROW | {"email": "=?utf-8?q?a?=@example.com"}, template_for("recipient"))
    assert caught.value.reason == "unsafe_header"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("=?utf-8?q?harmless?=", id="valid-encoded-word"),
        pytest.param("Price =?iso-8859-1?q?=E9t=E9?= today", id="latin1-word"),
        pytest.param("a =? b ?= c", id="lookalike"),
    ],
)
def test_harmless_encoded_words_are_shown_literally(value: str) -> None:
    template = Template(subject="{first_name}", text="x", sender=SENDER, to="{first_name}")
    message = render_message(BASE_ROW | {"first_name": value}, template).message
    assert str(message["Subject"]) == value
    assert message["To"].addresses[0].display_name == value


def test_line_breaks_in_body_only_columns_are_fine() -> None:
    template = Template(subject="Hi", text="Note:\n{note}", html="<p>{note}</p>", sender=SENDER)
    rendered = render_message(
        BASE_ROW | {"note": "line 1\r\nBcc: x@evil.example\n\nline 3"}, template
    )
    message = rendered.message
    assert message["Bcc"] is None
    assert [k for k in message.keys()] == [
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"
    ]  # fmt: skip
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert text.get_content() == "Note:\nline 1\nBcc: x@evil.example\n\nline 3\n"


HEADER_NAMES = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "X-Contact",
    "MIME-Version",
    "Content-Type",
]
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
SAFE_TEXT = st.text(st.sampled_from('ab AB:=?QBqb_<>"\\,;@.()éü中'), max_size=30)
DANGER = st.sampled_from(["", "", "", "\r\n", "\n", "\r", "\t", "\x00", "\x85", "\u2028",
                          "=?utf-8?q?=0D=0A?=", "=?utf-8?b?DQo=?="])  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.builds(
        lambda a, d: a + d,
        st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))),
        DANGER,
    ),
    last=st.builds(lambda a, d, b: a + d + b, SAFE_TEXT, DANGER, SAFE_TEXT),
    cid=st.builds(lambda a, d: a + d, SAFE_TEXT, DANGER),
)
def test_any_value_either_fails_or_leaves_the_headers_alone(
    first: str, last: str, cid: str
) -> None:
    template = Template(
        subject="Re: {first_name} {last_name}",
        text="{first_name}",
        sender=SENDER,
        to="{first_name} {last_name}",
        headers={"X-Contact": "{cid}"},
    )
    row = BASE_ROW | {"first_name": first, "last_name": last, "cid": cid}
    has_control = any(UNSAFE.search(value) for value in (first, last, cid))
    try:
        rendered = render_message(row, template)
    except RowError as error:
        assert error.reason == "unsafe_header"
        assert has_control or any("=?" in value for value in (first, last, cid))
        event(f"refused: {error.reason}")
        return
    assert not has_control
    event(f"rendered (smtputf8={rendered.smtputf8})")
    data = rendered.data
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line and len(line) <= 998
        assert not any(byte < 0x20 or byte == 0x7F for byte in line)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert [k for k in parsed.keys() if k != "Content-Transfer-Encoding"] == HEADER_NAMES
    assert str(parsed["Subject"]) == f"Re: {first} {last}".strip()
    assert str(parsed["X-Contact"]) == cid.strip()
    # display names read per RFC 2047 6.2 (see test_compose_equivalence: CPython gh-128110)
    expected_name = " ".join(f"{first} {last}".split())
    assert mailbox(parsed, "To") == (expected_name, "ann", "example.com")
