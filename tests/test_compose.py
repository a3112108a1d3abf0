"""compose.py: templates, rendering, addresses, encodings, check(), preview(), Message-IDs.

Every message is read back with the stdlib parser (``Rendered.message``); one test delivers
rendered messages to an aiosmtpd server on 127.0.0.1 and compares what it received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosmtplib
import pandas as pd
import pytest
from aiosmtpd.smtp import SMTP as SMTPServerProtocol
from aiosmtpd.smtp import Envelope, Session

from smtpkit._sample import make_contacts
from smtpkit.compose import (
    CHECK_COLUMNS,
    Attachment,
    Preview,
    Rendered,
    RowError,
    Template,
    check,
    make_message_id,
    preview,
    render,
    render_message,
)
from smtpkit.errors import InputError, MissingColumnError, SmtpkitError, TemplateError

SENDER = "Acme News <news@acme.example>"
ROW = {
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann.lee@example.com",
    "contact_id": "C100",
    "plan": "pro",
}
DATE = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def simple(**options: Any) -> Template:
    base: dict[str, Any] = {
        "subject": "Hi {first_name}",
        "text": "Hello {first_name}!",
        "sender": SENDER,
    }
    base.update(options)
    return Template(**base)


def lines_of(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


def assert_wire_safe(data: bytes) -> None:
    """CRLF only, no bare CR or LF, every line within 998 octets."""
    for line in lines_of(data):
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 998


# --- Template construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"text": None},
            "A template needs text=, html= or both for the message body.",
            id="no-body",
        ),
        pytest.param(
            {"html": "<style>p { color: red }</style>{first_name}", "text": None},
            "The html template (line 1) has '{ color: red }', which is not a field; write {{ and "
            "}} for literal braces (CSS in a <style> block needs them too), and {column_name} for "
            "a field. Fields are column names without spaces at their ends, dots or brackets.",
            id="css-braces",
        ),
        pytest.param(
            {"subject": "Hi {row.__class__}"},
            "The subject template (line 1) has '{row.__class__}', which is not a field",
            id="attribute-access",
        ),
        pytest.param(
            {"subject": "Hi {names[0]}"},
            "The subject template (line 1) has '{names[0]}', which is not a field",
            id="indexing",
        ),
        pytest.param(
            {"text": "Hi {first_name!r}"},
            "The text template (line 1) uses the conversion '{first_name!r}'; write {first_name} "
            "(values are always inserted as text).",
            id="conversion",
        ),
        pytest.param(
            {"text": "Hi {first_name"},
            "The text template has unbalanced braces (expected '}' before end of string)",
            id="unclosed-brace",
        ),
        pytest.param(
            {"sender": "not an address"},
            "sender= is not usable: The address 'not an address' is not valid: it is not of the "
            "form local-part@domain.",
            id="sender-invalid",
        ),
        pytest.param(
            {"sender": "{first_name} <a@acme.example>"},
            "sender= must be a constant address; it cannot hold fields.",
            id="sender-with-field",
        ),
        pytest.param(
            {"sender": "News <news@acme.example>\r\nBcc: all@evil.example"},
            "The sender address contains the control character '\\r'; header text must be one "
            "line without control characters.",
            id="sender-crlf",
        ),
        pytest.param(
            {"reply_to": "help@@acme.example"},
            "reply_to= is not usable: The address 'help@@acme.example' is not valid: its local "
            "part has a character or a dot an address cannot have there.",
            id="reply-to-invalid",
        ),
        pytest.param(
            {"subject": "Sale\nBcc: all@evil.example"},
            "The subject template contains the control character '\\n'; header text must be one "
            "line without control characters.",
            id="subject-constant-lf",
        ),
        pytest.param(
            {"subject": "Sale =?utf-8?q?=0D=0ABcc:_all@evil.example?= {first_name}"},
            "The subject template contains the encoded-word "
            "'=?utf-8?q?=0D=0ABcc:_all@evil.example?=', which decodes to a control character; "
            "remove it.",
            id="subject-constant-encoded-crlf",
        ),
        pytest.param(
            {"headers": {"Subject": "x"}},
            "headers= cannot set 'Subject': smtpkit writes it (use subject=, sender=, reply_to=, "
            "to=, unsubscribe= or attachments=).",
            id="header-subject",
        ),
        pytest.param(
            {"headers": {"content-type": "text/html"}},
            "headers= cannot set 'content-type': smtpkit writes it",
            id="header-content-type",
        ),
        pytest.param(
            {"headers": {"Bcc": "all@evil.example"}},
            "headers= cannot set Bcc: each message goes to one recipient.",
            id="header-bcc",
        ),
        pytest.param(
            {"headers": {"X-Note": "a", "x-note": "b"}},
            "headers= sets 'x-note' twice (header names ignore case).",
            id="header-twice",
        ),
        pytest.param(
            {"headers": {"X Note": "a"}},
            "The header name 'X Note' is not valid: use printable ASCII without spaces or colons, "
            "such as 'X-Campaign'.",
            id="header-name-space",
        ),
        pytest.param(
            {"headers": {"X-Note": "a\r\nBcc: all@evil.example"}},
            "The X-Note header template contains the control character '\\r'",
            id="header-value-crlf",
        ),
        pytest.param(
            {"unsubscribe": "http://acme.example/u?id={contact_id}"},
            "unsubscribe= 'http://acme.example/u?id={contact_id}' must start with 'https://' and a "
            "host, or 'mailto:' (RFC 8058 one-click unsubscribe needs https).",
            id="unsubscribe-http",
        ),
        pytest.param(
            {"unsubscribe": "https://acme.example/u?id={contact_id}&x=a b"},
            "unsubscribe= 'https://acme.example/u?id={contact_id}&x=a b' contains characters a "
            "URL in a header cannot have (spaces, quotes, angle brackets, non-ASCII); "
            "percent-encode them.",
            id="unsubscribe-space",
        ),
        pytest.param(
            {"attachments": ["/nonexistent/report.pdf"]},
            "The attachment '/nonexistent/report.pdf' does not exist or is not a file.",
            id="attachment-missing-file",
        ),
        pytest.param(
            {"attachments": [("a.bin", b"x", "not a type")]},
            "The content type 'not a type' of attachment 'a.bin' is not of the form "
            "'type/subtype', such as 'application/pdf'.",
            id="attachment-bad-type",
        ),
        pytest.param(
            {"attachments": "report.pdf"},
            "attachments= must be a list, such as ['report.pdf'].",
            id="attachments-not-a-list",
        ),
        pytest.param(
            {"to": "{first_name} <not-an-address>"},
            "to= is not usable: The address 'not-an-address' is not valid: it is not of the form "
            "local-part@domain.",
            id="to-constant-invalid",
        ),
    ],
)
def test_template_refuses(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        simple(**options)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_template_knows_its_fields_and_sender() -> None:
    template = Template(
        subject="{first_name}, news",
        html='<p>Hi {last_name}</p><a href="https://x.example/?c={contact_id}">go</a>',
        sender="Zoë <news@bücher.example>",
        to="{first_name} {last_name}",
        headers={"X-Plan": "{plan}"},
        unsubscribe="https://acme.example/u?id={uid}",
    )
    assert template.fields == {"first_name", "last_name", "contact_id", "plan", "uid"}
    assert template.sender_address == "news@xn--bcher-kva.example"
    assert template.domain == "xn--bcher-kva.example"
    assert template.text_template == "Hi {last_name}\n\ngo (https://x.example/?c={contact_id})\n"
    assert repr(template) == (
        "Template(subject='{first_name}, news', sender='Zoë <news@bücher.example>', "
        "to='{first_name} {last_name}', body='html', fields=['contact_id', 'first_name', "
        "'last_name', 'plan', 'uid'])"
    )


def test_template_is_frozen_and_pickles() -> None:
    template = simple(headers={"X-Plan": "{plan}"}, attachments=[("a.txt", b"hello")])
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.subject = "changed"  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(template))
    assert copy.fields == template.fields
    original = render_message(ROW, template, message_id="<a@acme.example>", date=DATE).message
    again = render_message(ROW, copy, message_id="<a@acme.example>", date=DATE).message
    assert str(again["X-Plan"]) == str(original["X-Plan"]) == "pro"
    assert [p.get_content_type() for p in again.walk()] == [
        p.get_content_type() for p in original.walk()
    ]


# --- structure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "types"),
    [
        pytest.param({}, ["text/plain"], id="text"),
        pytest.param(
            {"html": "<p>Hi {first_name}</p>"},
            ["multipart/alternative", "text/plain", "text/html"],
            id="text-and-html",
        ),
        pytest.param(
            {"text": None, "html": "<p>Hi {first_name}</p>"},
            ["multipart/alternative", "text/plain", "text/html"],
            id="html-only",
        ),
        pytest.param(
            {"attachments": [("terms.pdf", b"%PDF-1.4")]},
            ["multipart/mixed", "text/plain", "application/pdf"],
            id="text-attachment",
        ),
        pytest.param(
            {"html": "<p>x</p>", "attachments": [("a.pdf", b"1"), ("b.csv", b"x,y\n")]},
            [
                "multipart/mixed",
                "multipart/alternative",
                "text/plain",
                "text/html",
                "application/pdf",
                "text/csv",
            ],
            id="alternative-attachments",
        ),
    ],
)
def test_mime_structure(options: dict[str, Any], types: list[str]) -> None:
    rendered = render_message(ROW, simple(**options))
    message = rendered.message
    assert [part.get_content_type() for part in message.walk()] == types
    assert message["MIME-Version"] == "1.0"
    assert message.defects == [] and all(part.defects == [] for part in message.walk())
    assert rendered.data.isascii() and not rendered.smtputf8
    assert_wire_safe(rendered.data)


def test_headers_of_a_plain_message() -> None:
    template = simple(reply_to="Help <help@acme.example>", to="{first_name} {last_name}")
    rendered = render_message(ROW, template, message_id="<m1@acme.example>", date=DATE)
    assert rendered.data.split(b"\r\n\r\n")[0].split(b"\r\n") == [
        b"From: Acme News <news@acme.example>",
        b"To: Ann Lee <ann.lee@example.com>",
        b"Subject: Hi Ann",
        b"Date: Sun, 01 Mar 2026 09:30:00 +0000",
        b"Message-ID: <m1@acme.example>",
        b"Reply-To: Help <help@acme.example>",
        b"MIME-Version: 1.0",
        b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
    ]
    assert rendered.message.get_content() == "Hello Ann!\n"
    assert rendered == Rendered(rendered.data, "<m1@acme.example>", "ann.lee@example.com", False)


def test_values_are_html_escaped_in_html_only() -> None:
    row = {**ROW, "first_name": '<b>Tom & "Jerry"</b>'}
    message = render_message(row, simple(html="<p>Hi {first_name}</p>")).message
    text, html_part = (part.get_content() for part in message.walk() if not part.is_multipart())
    assert text == 'Hello <b>Tom & "Jerry"</b>!\n'
    assert html_part == "<p>Hi &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;</p>\n"
    assert str(message["Subject"]) == 'Hi <b>Tom & "Jerry"</b>'


@pytest.mark.parametrize(
    ("html", "text"),
    [
        pytest.param("<p>One</p><p>Two</p>", "One\n\nTwo\n", id="paragraphs"),
        pytest.param("a<br>b<br/>c", "a\nb\nc\n", id="line-breaks"),
        pytest.param("<ul><li>x</li><li>y</li></ul>", "- x\n- y\n", id="bullets"),
        pytest.param(
            "<ol><li>x</li><li>y<ul><li>z</li></ul></li></ol>",
            "1. x\n2. y\n  - z\n",
            id="nested-lists",
        ),
        pytest.param(
            '<a href="https://a.example/p">Read</a>', "Read (https://a.example/p)\n", id="link"
        ),
        pytest.param(
            '<a href="https://a.example">https://a.example</a>',
            "https://a.example\n",
            id="link-same-text",
        ),
        pytest.param('<a href="mailto:x@a.example">x@a.example</a>', "x@a.example\n", id="mailto"),
        pytest.param('<a href="#top">Top</a>', "Top\n", id="anchor"),
        pytest.param('<img src="l.png" alt="Acme logo"> hi', "Acme logo hi\n", id="img-alt"),
        pytest.param(
            "<html><head><title>T</title><style>p {{x:1}}</style></head>"
            "<body>Hi<script>x()</script></body></html>",
            "Hi\n",
            id="head-style-script-skipped",
        ),
        pytest.param("Tom &amp; Jerry &lt;3 &nbsp;ok", "Tom & Jerry <3 ok\n", id="entities"),
        pytest.param("<pre>  a\n    b</pre>", "  a\n    b\n", id="pre-kept"),
        pytest.param(
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>",
            "a  b\nc\n",
            id="table",
        ),
        pytest.param(
            "<p>Hi   {first_name},\n  welcome</p>",
            "Hi {first_name}, welcome\n",
            id="whitespace-collapsed",
        ),
        pytest.param(
            '<a href="https://x.example/?c={contact_id}">{first_name}</a>',
            "{first_name} (https://x.example/?c={contact_id})\n",
            id="fields-in-link",
        ),
    ],
)
def test_text_generated_from_html(html: str, text: str) -> None:
    assert simple(text=None, html=html).text_template == text


def test_generated_text_is_filled_with_raw_values() -> None:
    template = simple(text=None, html="<p>Hi <b>{first_name}</b> &amp; co</p>")
    message = render_message({**ROW, "first_name": "A&B <x>"}, template).message
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert text.get_content() == "Hi A&B <x> & co\n"


def test_format_spec_and_non_string_values() -> None:
    template = simple(text="{amount:,.2f} due on {due:%d %b %Y}; {count} items; vip={vip}")
    row = {**ROW, "amount": 1234.5, "due": datetime(2026, 4, 2), "count": 3, "vip": True}
    assert (
        render_message(row, template).message.get_content()
        == "1,234.50 due on 02 Apr 2026; 3 items; vip=True\n"
    )


def test_series_row_and_bad_rows() -> None:
    frame = pd.DataFrame([ROW])
    assert render(frame.iloc[0], simple()).startswith(b"From: ")
    with pytest.raises(
        InputError, match=r"^A row must be a mapping \(dict\) or a pandas Series, not list"
    ):
        render([1, 2], simple())  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match=r"^The second argument must be a smtpkit\.Template, not dict\.$"
    ):
        render(ROW, {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body_value", "decoded"),
    [
        pytest.param("a\r\nb", "a\nb", id="crlf"),
        pytest.param("a\rb", "a\nb", id="lone-cr"),
        pytest.param("a\nb", "a\nb", id="lf"),
        pytest.param("trailing   ", "trailing   ", id="trailing-spaces"),
        pytest.param(".\n.hidden\nFrom here", ".\n.hidden\nFrom here", id="dots-and-from"),
        pytest.param("x" * 3000, "x" * 3000, id="very-long-line"),
        pytest.param("é" * 1000, "é" * 1000, id="long-non-ascii"),
        pytest.param("", "", id="empty"),
    ],
)
def test_body_values_round_trip(body_value: str, decoded: str) -> None:
    template = simple(text="<{note}>\n{note}", html="<p>{note}</p>")
    rendered = render_message({**ROW, "note": body_value}, template)
    assert_wire_safe(rendered.data)
    text, html_part = (p.get_content() for p in rendered.message.walk() if not p.is_multipart())
    # like EmailMessage.set_content: a part ends with exactly the line break it needs
    assert text == f"<{decoded}>\n{decoded}" + ("\n" if decoded else "")
    assert html_part == f"<p>{decoded}</p>\n"


def test_body_ending_with_a_field_gets_one_final_newline() -> None:
    template = simple(text="{note}")
    for value, expected in [("x", "x\n"), ("x\n", "x\n"), ("", "\n")]:
        assert render_message({**ROW, "note": value}, template).message.get_content() == expected


# --- headers: encodings, folding, addresses ---------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "raw"),
    [
        pytest.param("Hello Ann", b"Subject: Hello Ann", id="ascii"),
        pytest.param(
            "Grüße, Ann", b"Subject: =?utf-8?b?R3LDvMOfZSwgQW5u?=", id="non-ascii-encoded"
        ),
        pytest.param(
            "Save =?utf-8?q?x?= now",
            b"Subject: =?utf-8?b?U2F2ZSA9P3V0Zi04P3E/eD89IG5vdw==?=",
            id="encoded-word-lookalike-kept-literal",
        ),
        pytest.param("  padded  ", b"Subject: padded", id="outer-spaces-stripped"),
    ],
)
def test_subject_encoding(subject: str, raw: bytes) -> None:
    rendered = render_message({**ROW, "s": subject}, simple(subject="{s}"))
    assert raw in lines_of(rendered.data)
    assert str(rendered.message["Subject"]) == subject.strip()


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("word " * 60, id="many-words"),
        pytest.param("x" * 2500, id="one-huge-word"),
        pytest.param("ü" * 500, id="long-non-ascii"),
        pytest.param("a  " * 40 + "b", id="space-runs"),
    ],
)
def test_long_subjects_fold_and_round_trip(subject: str) -> None:
    rendered = render_message({**ROW, "s": subject}, simple(subject="{s}"))
    assert_wire_safe(rendered.data)
    header_lines = rendered.data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert all(len(line) <= 78 for line in header_lines if not line.startswith(b"Subject: x"))
    assert str(rendered.message["Subject"]) == subject.strip()


@pytest.mark.parametrize(
    ("display", "raw"),
    [
        pytest.param("Ann Lee", b"To: Ann Lee <ann.lee@example.com>", id="atoms"),
        pytest.param("Lee, Ann", b'To: "Lee, Ann" <ann.lee@example.com>', id="comma-quoted"),
        pytest.param(
            'Ann "the boss" Lee',
            b'To: "Ann \\"the boss\\" Lee" <ann.lee@example.com>',
            id="quotes-escaped",
        ),
        pytest.param(
            "Jörg Müller",
            b"To: =?utf-8?b?SsO2cmcgTcO8bGxlcg==?= <ann.lee@example.com>",
            id="non-ascii-encoded",
        ),
        pytest.param("", b"To: ann.lee@example.com", id="empty-name"),
    ],
)
def test_to_display_name(display: str, raw: bytes) -> None:
    rendered = render_message({**ROW, "n": display}, simple(to="{n}"))
    assert raw in lines_of(rendered.data)
    (address,) = rendered.message["To"].addresses
    assert (address.display_name, address.addr_spec) == (display, "ann.lee@example.com")


def test_to_template_with_its_own_address() -> None:
    template = simple(to='"{last_name}, {first_name}" <{work_email}>')
    row = {**ROW, "work_email": "ann@work.example"}
    rendered = render_message(row, template)
    (address,) = rendered.message["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Lee, Ann", "ann@work.example")
    assert rendered.recipient == "ann.lee@example.com"  # the envelope still goes to the recipient
    with pytest.raises(RowError) as caught:
        render_message({**row, "work_email": "no-at-sign"}, template)
    assert (caught.value.reason, caught.value.field) == ("invalid_recipient", "work_email")


@pytest.mark.parametrize(
    ("email_address", "envelope", "to_header", "smtputf8"),
    [
        pytest.param("ann@example.com", "ann@example.com", "ann@example.com", False, id="ascii"),
        pytest.param(
            "ann@bücher.example.de",
            "ann@xn--bcher-kva.example.de",
            "ann@xn--bcher-kva.example.de",
            False,
            id="idn-domain",
        ),
        pytest.param(
            "ann@BÜCHER.example.de",
            "ann@xn--bcher-kva.example.de",
            "ann@xn--bcher-kva.example.de",
            False,
            id="idn-uppercase",
        ),
        pytest.param(
            "ann@例え.jp", "ann@xn--r8jz45g.jp", "ann@xn--r8jz45g.jp", False, id="idn-japanese"
        ),
        pytest.param(
            "josé@example.com", "josé@example.com", "josé@example.com", True, id="utf8-local"
        ),
        pytest.param(
            "用户@例え.jp", "用户@xn--r8jz45g.jp", "用户@例え.jp", True, id="utf8-local-idn"
        ),
    ],
)
def test_recipient_forms(email_address: str, envelope: str, to_header: str, smtputf8: bool) -> None:
    rendered = render_message(
        {**ROW, "email": email_address},
        simple(subject="Grüße {first_name}", to="{first_name} Müller"),
    )
    assert (rendered.recipient, rendered.smtputf8) == (envelope, smtputf8)
    assert rendered.data.isascii() is not smtputf8
    to_line = next(line for line in lines_of(rendered.data) if line.startswith(b"To: "))
    assert to_line.endswith(f"<{to_header}>".encode())
    if smtputf8:  # RFC 6532: raw UTF-8 instead of encoded-words
        assert b"Subject: Gr\xc3\xbc\xc3\x9fe Ann" in lines_of(rendered.data)
        assert b"=?" not in rendered.data.split(b"\r\n\r\n")[0]
    message = rendered.message
    assert str(message["Subject"]) == "Grüße Ann"
    assert message["To"].addresses[0].display_name == "Ann Müller"


@pytest.mark.parametrize(
    ("row", "reason", "field", "detail"),
    [
        pytest.param(
            {"email": "no-at-sign"},
            "invalid_recipient",
            "email",
            "The address 'no-at-sign' is not valid: it is not of the form local-part@domain.",
            id="no-at",
        ),
        pytest.param(
            {"email": "a b@example.com"},
            "invalid_recipient",
            "email",
            "The address 'a b@example.com' is not valid: it contains white space.",
            id="space",
        ),
        pytest.param(
            {"email": "a@example..com"},
            "invalid_recipient",
            "email",
            "The address 'a@example..com' is not valid: its domain is not a valid host name.",
            id="empty-label",
        ),
        pytest.param(
            {"email": '"a b"@example.com'},
            "invalid_recipient",
            "email",
            "The address '\"a b\"@example.com' is not valid: it contains white space.",
            id="quoted-local",
        ),
        pytest.param(
            {"email": "a,b@example.com"},
            "invalid_recipient",
            "email",
            "The address 'a,b@example.com' is not valid: its local part has a character or a dot "
            "an address cannot have there.",
            id="comma",
        ),
        pytest.param(
            {"email": "x" * 65 + "@example.com"},
            "invalid_recipient",
            "email",
            "its local part is longer than 64 octets",
            id="long-local",
        ),
        pytest.param(
            {"email": "ann@example.com\r\nBcc: all@evil.example"},
            "unsafe_header",
            "email",
            "contains the control character '\\r'; clean the list with smtpkit.clean before "
            "sending.",
            id="crlf",
        ),
        pytest.param(
            {"email": "\tann@example.com"},
            "unsafe_header",
            "email",
            "contains the control character '\\t'",
            id="tab",
        ),
        pytest.param(
            {"email": None},
            "missing_field",
            "email",
            "Column 'email' is empty for this row, so it has no recipient address.",
            id="none",
        ),
        pytest.param(
            {"email": float("nan")}, "missing_field", "email", "Column 'email' is empty", id="nan"
        ),
        pytest.param(
            {"email": 42},
            "invalid_recipient",
            "email",
            "The recipient must be an address string, not int 42.",
            id="not-a-string",
        ),
        pytest.param(
            {"email_normalized": pd.NA, "email": "ann@example.com"},
            "missing_field",
            "email_normalized",
            "Column 'email_normalized' is empty",
            id="normalized-na-wins",
        ),
        pytest.param(
            {},
            "missing_field",
            "email",
            "The row has no 'email_normalized' or 'email' column for the recipient address.",
            id="no-column",
        ),
    ],
)
def test_bad_recipients(row: dict[str, Any], reason: str, field: str, detail: str) -> None:
    full = {k: v for k, v in ROW.items() if k != "email"} | row
    with pytest.raises(RowError) as caught:
        render_message(full, simple())
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert detail in caught.value.detail


def test_recipient_column_preference_and_override() -> None:
    row = {**ROW, "email": " Ann.Lee@Example.COM ", "email_normalized": "ann.lee@example.com"}
    assert render_message(row, simple()).recipient == "ann.lee@example.com"
    override = render_message(row, simple(), recipient="seed@acme.example")
    assert override.recipient == "seed@acme.example"
    assert override.message["To"].addresses[0].addr_spec == "seed@acme.example"


# --- Message-ID, Date -------------------------------------------------------------------------


def test_message_ids_and_dates() -> None:
    template = simple()
    rendered = [render_message(ROW, template) for _ in range(500)]
    ids = {r.message_id for r in rendered}
    assert len(ids) == 500
    assert all(re.fullmatch(r"<[0-9a-f]{32}@acme\.example>", i) for i in ids)
    first = rendered[0].message
    assert str(first["Message-ID"]) == rendered[0].message_id
    assert abs(first["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)
    local = datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    given = render_message(ROW, template, message_id="abc.1@acme.example", date=local)
    assert given.message_id == "<abc.1@acme.example>"
    assert given.message["Date"].datetime == local
    assert b"Date: Wed, 06 May 2026 07:08:09 +0200" in lines_of(given.data)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"message_id": "<a b@x.example>"},
            "message_id '<a b@x.example>' is not a valid Message-ID; make one with "
            "make_message_id(domain=..., key=...).",
            id="id-space",
        ),
        pytest.param(
            {"message_id": "<a@x.example>\r\nBcc: y@z.example"},
            "message_id '<a@x.example>\\r\\nBcc: y@z.example' is not a valid Message-ID; make one "
            "with make_message_id(domain=..., key=...).",
            id="id-crlf",
        ),
        pytest.param(
            {"date": datetime(2026, 1, 1)},
            "date must be a timezone-aware datetime, such as datetime.now(timezone.utc); got "
            "datetime.datetime(2026, 1, 1, 0, 0).",
            id="naive-date",
        ),
        pytest.param(
            {"date": "2026-01-01"}, "date must be a timezone-aware datetime", id="date-string"
        ),
    ],
)
def test_bad_message_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as caught:
        render_message(ROW, simple(), **options)
    assert str(caught.value).startswith(message)


def test_make_message_id() -> None:
    a = make_message_id(domain="acme.example", key="spring/ann@example.com")
    assert a == make_message_id(domain="acme.example", key="spring/ann@example.com")
    assert a != make_message_id(domain="acme.example", key="spring/bob@example.com")
    assert a != make_message_id(domain="other.example", key="spring/ann@example.com")
    assert re.fullmatch(r"<[0-9a-f]{32}@acme\.example>", a)
    assert make_message_id(domain="bücher.example").endswith("@xn--bcher-kva.example>")
    assert make_message_id(domain="acme.example") != make_message_id(domain="acme.example")
    with pytest.raises(
        InputError, match=r"^domain must be a host name such as 'example.com'; got 'bad domain'.$"
    ):
        make_message_id(domain="bad domain")
    with pytest.raises(
        InputError, match=r"^key must be a string such as 'campaign/recipient'; got int.$"
    ):
        make_message_id(domain="acme.example", key=3)  # type: ignore[arg-type]


# --- List-Unsubscribe, custom headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("unsubscribe", "value", "post"),
    [
        pytest.param(
            "https://acme.example/u?id={contact_id}",
            "<https://acme.example/u?id=C%201%26x%3Dy>",
            True,
            id="https",
        ),
        pytest.param(
            "mailto:unsub@acme.example?subject={contact_id}",
            "<mailto:unsub@acme.example?subject=C%201%26x%3Dy>",
            False,
            id="mailto-only",
        ),
        pytest.param(
            ["https://acme.example/u?id={contact_id}", "mailto:unsub@acme.example"],
            "<https://acme.example/u?id=C%201%26x%3Dy>, <mailto:unsub@acme.example>",
            True,
            id="both",
        ),
        pytest.param(
            "https://acme.example/unsubscribe",
            "<https://acme.example/unsubscribe>",
            True,
            id="constant",
        ),
        pytest.param(
            "{unsub_url}", "<https://esp.example/u/C1?sig=abc>", True, id="whole-url-column"
        ),
    ],
)
def test_list_unsubscribe(unsubscribe: Any, value: str, post: bool) -> None:
    row = {**ROW, "contact_id": "C 1&x=y", "unsub_url": "https://esp.example/u/C1?sig=abc"}
    message = render_message(row, simple(unsubscribe=unsubscribe)).message
    assert str(message["List-Unsubscribe"]) == value
    assert (message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click") is post
    assert (message["List-Unsubscribe-Post"] is None) is not post


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://esp.example/u", id="http"),
        pytest.param("https://esp.example/u?x=<y>", id="angle-bracket"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("https:///nohost", id="no-host"),
    ],
)
def test_list_unsubscribe_bad_whole_url_is_a_row_error(url: str) -> None:
    with pytest.raises(RowError) as caught:
        render_message({**ROW, "u": url}, simple(unsubscribe="{u}"))
    assert (caught.value.reason, caught.value.field) == ("invalid_value", "u")


def test_list_unsubscribe_too_long_is_a_row_error() -> None:
    with pytest.raises(RowError) as caught:
        render_message(
            {**ROW, "contact_id": "x" * 1000},
            simple(unsubscribe="https://acme.example/u?id={contact_id}"),
        )
    assert (caught.value.reason, caught.value.field) == ("line_too_long", "contact_id")


def test_custom_headers() -> None:
    headers = {
        "X-Campaign": "spring sale",
        "X-Contact": "{contact_id} / {plan}",
        "X-Greeting": "Grüße {first_name}",
    }
    template = simple(headers=headers)
    message = render_message(ROW, template).message
    assert str(message["X-Campaign"]) == "spring sale"
    assert str(message["X-Contact"]) == "C100 / pro"
    assert str(message["X-Greeting"]) == "Grüße Ann"
    assert template.headers is not None and dict(template.headers)["X-Campaign"] == "spring sale"


# --- attachments ---------------------------------------------------------------------------------


def test_attachments(tmp_path: Path) -> None:
    pdf = tmp_path / "Prix été 2026.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40)
    long_name = "Übersicht der Änderungen " * 8 + ".txt"
    template = simple(
        attachments=[
            pdf,
            Attachment("prices.csv", "sku;price\nä;1\n".encode()),
            (long_name, b"plain"),
            Attachment.from_path(pdf, filename="renamed.bin", content_type="application/x-custom"),
        ]
    )
    rendered = render_message(ROW, template)
    assert_wire_safe(rendered.data)
    parts = [p for p in rendered.message.walk() if p.get_filename() is not None]
    assert [(p.get_filename(), p.get_content_type(), p.get_content_charset()) for p in parts] == [
        ("Prix été 2026.pdf", "application/pdf", None),
        ("prices.csv", "text/csv", "utf-8"),
        (long_name, "text/plain", "utf-8"),
        ("renamed.bin", "application/x-custom", None),
    ]
    assert [p.get_payload(decode=True) for p in parts] == [
        pdf.read_bytes(),
        "sku;price\nä;1\n".encode(),
        b"plain",
        pdf.read_bytes(),
    ]
    assert all(p.get_content_disposition() == "attachment" for p in parts)
    assert repr(template.attachments[1]) == "Attachment('prices.csv', <15 bytes>, 'text/csv')"


# --- value problems --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        pytest.param(
            None,
            "missing_field",
            "Column 'first_name' is empty for this row; fill it in or drop the row before sending.",
            id="none",
        ),
        pytest.param(float("nan"), "missing_field", "Column 'first_name' is empty", id="nan"),
        pytest.param(pd.NA, "missing_field", "Column 'first_name' is empty", id="pd-na"),
        pytest.param(pd.NaT, "missing_field", "Column 'first_name' is empty", id="nat"),
        pytest.param(
            "Ann\ud800",
            "invalid_value",
            "Column 'first_name' holds text that cannot be encoded as UTF-8 (a lone surrogate); "
            "check how the file was decoded.",
            id="lone-surrogate",
        ),
    ],
)
def test_value_problems(value: Any, reason: str, detail: str) -> None:
    with pytest.raises(RowError) as caught:
        render_message({**ROW, "first_name": value}, simple())
    assert (caught.value.reason, caught.value.field) == (reason, "first_name")
    assert caught.value.detail.startswith(detail)


def test_missing_key_and_bad_format_spec() -> None:
    row = {k: v for k, v in ROW.items() if k != "first_name"}
    with pytest.raises(
        RowError, match=r"^The row has no column 'first_name', which the template uses\.$"
    ) as caught:
        render_message(row, simple())
    assert caught.value.reason == "missing_field"
    with pytest.raises(RowError) as caught:
        render_message({**ROW, "amount": "abc"}, simple(text="{amount:.2f}"))
    assert caught.value.reason == "invalid_value"
    assert caught.value.detail.startswith(
        "The value 'abc' of column 'amount' does not fit the format spec '.2f'"
    )


def test_row_error_is_a_value_error_and_pickles() -> None:
    error = RowError("unsafe_header", "Column 'x' holds a control character.", "x")
    assert isinstance(error, SmtpkitError) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.detail, copy.field, str(copy)) == (
        "unsafe_header",
        error.detail,
        "x",
        error.detail,
    )


# --- check() -----------------------------------------------------------------------------------


def test_check_reports_every_problem_of_every_row() -> None:
    frame = pd.DataFrame(
        {
            "first_name": ["Ann", None, "Eve\r\nBcc: x@evil.example", "Bob"],
            "last_name": ["Lee", None, "Doe", "Ray"],
            "email": ["ann@example.com", "bo b@example.com", "eve@example.com", None],
        },
        index=["r1", "r2", "r3", "r4"],
    )
    before = frame.copy()
    template = simple(subject="Hi {first_name} {last_name}")
    problems = check(frame, template)
    pd.testing.assert_frame_equal(frame, before)
    assert list(problems.columns) == list(CHECK_COLUMNS)
    assert problems[["index", "reason", "field"]].to_dict("records") == [
        {"index": "r2", "reason": "missing_field", "field": "first_name"},
        {"index": "r2", "reason": "missing_field", "field": "last_name"},
        {"index": "r2", "reason": "invalid_recipient", "field": "email"},
        {"index": "r3", "reason": "unsafe_header", "field": "first_name"},
        {"index": "r4", "reason": "missing_field", "field": "email"},
    ]
    assert problems.loc[3, "detail"] == (
        "Column 'first_name' holds the control character '\\r', which is not allowed in a header; "
        "clean the value or drop the row."
    )
    assert str(problems["reason"].dtype) == "string"


def test_check_of_a_clean_frame_is_empty() -> None:
    frame = pd.DataFrame([ROW, {**ROW, "email": "bob@example.com"}])
    problems = check(frame, simple())
    assert problems.empty and list(problems.columns) == list(CHECK_COLUMNS)


def test_check_agrees_with_render_on_the_sample_contacts() -> None:
    frame = make_contacts(600, seed=11)
    template = simple(subject="Hi {first_name}", text="{company}", to="{first_name} {last_name}")
    problems = check(frame, template)
    failing = set(problems["index"])
    for label, row in zip(frame.index, frame.to_dict("records"), strict=True):
        try:
            render_message(row, template)
            assert label not in failing
        except RowError as error:
            assert label in failing
            first = problems[problems["index"] == label].iloc[0]
            assert (first["reason"], first["field"]) == (error.reason, error.field)
    assert {"missing_field", "invalid_recipient", "unsafe_header"} <= set(problems["reason"])
    assert (problems["field"] == "company").sum() == frame["company"].isna().sum()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        pytest.param(
            pd.DataFrame({"email": ["a@example.com"], "age": [3]}),
            "The template uses columns the frame does not have: 'first_name'; the frame has "
            "'email', 'age'.",
            id="missing-column",
        ),
        pytest.param(
            pd.DataFrame({"first_name": ["Ann"], "mail": ["a@example.com"]}),
            "The frame needs an 'email_normalized' column (from smtpkit.clean) or an 'email' "
            "column for the recipient address; it has 'first_name', 'mail'.",
            id="no-recipient-column",
        ),
    ],
)
def test_check_and_preview_refuse_frames_without_the_columns(
    frame: pd.DataFrame, message: str
) -> None:
    for function in (check, preview):
        with pytest.raises(MissingColumnError) as caught:
            function(frame, simple())
        assert str(caught.value) == message


def test_check_refuses_wrong_arguments() -> None:
    with pytest.raises(InputError, match=r"^check\(\) needs a pandas DataFrame first, not dict.$"):
        check(ROW, simple())  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^check\(\) needs a smtpkit.Template second, not str.$"):
        check(pd.DataFrame([ROW]), "Hi")  # type: ignore[arg-type]


# --- preview() ---------------------------------------------------------------------------------


def test_preview_shows_messages_and_problems_safely() -> None:
    frame = pd.DataFrame(
        [
            {**ROW, "first_name": "<script>alert(1)</script>"},
            {**ROW, "email": "broken"},
            {**ROW, "first_name": "Zoë"},
            {**ROW, "first_name": "Not shown"},
        ]
    )
    template = simple(html="<p>Hi {first_name}</p><script>evil()</script>", to="{first_name}")
    shown = preview(frame, template)
    assert isinstance(shown, Preview) and len(shown.items) == 3 and shown.total == 4
    text = repr(shown)
    assert text.splitlines()[0] == "Preview of 3 of 4 rows"
    assert "Subject: Hi <script>alert(1)</script>" in text
    assert "cannot be sent: invalid_recipient: The address 'broken' is not valid" in text
    assert "Subject: Hi Zoë" in text and "Not shown" not in text
    page = shown._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<iframe sandbox=''") == 2
    assert "invalid_recipient" in page
    assert [str(m["Subject"]) for m in shown.messages] == ["Hi <script>alert(1)</script>", "Hi Zoë"]


def test_preview_counts() -> None:
    frame = pd.DataFrame([ROW] * 5)
    assert len(preview(frame, simple(), n=0).items) == 0
    assert len(preview(frame, simple(), n=10).items) == 5
    with pytest.raises(InputError, match=r"^n must be a whole number of rows, 0 or more; got -1.$"):
        preview(frame, simple(), n=-1)


def test_accessor_passes_through() -> None:
    import smtpkit  # noqa: F401  (registers df.smtpkit)

    frame = pd.DataFrame([ROW, {**ROW, "first_name": None}])
    assert frame.smtpkit.check(simple())["index"].tolist() == [1]
    assert len(frame.smtpkit.preview(simple(), n=1).items) == 1


# --- delivery over real SMTP -------------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok"


async def test_rendered_messages_arrive_intact_over_smtp() -> None:
    collect = _Collect()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTPServerProtocol(collect, enable_SMTPUTF8=True, hostname="sink.test"),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    template = simple(
        subject="Grüße {first_name}",
        text="Hi {first_name}\n.\n..leading dots\nFrom the team\n" + "long " * 400,
        html="<p>{first_name}</p>",
        attachments=[("a.bin", bytes(range(256)))],
        unsubscribe="https://acme.example/u?id={contact_id}",
    )
    rows = [ROW, {**ROW, "email": "ann@bücher.example"}, {**ROW, "email": "zoë@example.com"}]
    sent = [render_message(row, template) for row in rows]
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            for rendered in sent:
                options = ["SMTPUTF8"] if rendered.smtputf8 else []
                await client.sendmail(
                    template.sender_address,
                    [rendered.recipient],
                    rendered.data,
                    mail_options=options,
                )
    finally:
        server.close()
        await server.wait_closed()
    assert [e.rcpt_tos for e in collect.envelopes] == [[r.recipient] for r in sent]
    assert [e.original_content for e in collect.envelopes] == [r.data for r in sent]
    assert [("SMTPUTF8" in e.mail_options) for e in collect.envelopes] == [r.smtputf8 for r in sent]
    received = email.message_from_bytes(
        collect.envelopes[0].original_content or b"", policy=email.policy.default
    )
    text = next(p for p in received.walk() if p.get_content_type() == "text/plain")
    assert text.get_content().startswith("Hi Ann\r\n.\r\n..leading dots\r\nFrom the team\r\n")
    attachment = next(p for p in received.walk() if p.get_filename() == "a.bin")
    assert attachment.get_payload(decode=True) == bytes(range(256))
