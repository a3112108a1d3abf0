"""Bounces: provider formats, reason classification, bad input, sources, matching, suppression."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import mailbox
import random
from pathlib import Path

import pandas as pd
import pytest

import smtpkit
from smtpkit.bounces import (
    APPLIED_COLUMNS,
    BOUNCE_COLUMNS,
    HARD_REASONS,
    MAX_PARSE_BYTES,
    REASONS,
    BounceRecord,
    apply_bounces,
    bounces_frame,
    parse_bounce,
    read_bounces,
    suppressions,
    verp_token,
)
from smtpkit.errors import InputError, MissingColumnError
from smtpkit.outcomes import OUTCOME_COLUMNS, outcomes_frame

DATA = Path(__file__).parent / "data" / "bounces"


def fixture_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --- provider formats -----------------------------------------------------------------------

# (file, recipient, kind, reason, hard, status, format, bounce_to, original_message_id)
PROVIDER_CASES = [
    pytest.param("gmail_user_unknown.eml", "nosuchperson@gmail.com", "bounce", "user_unknown",
                 True, "5.1.1", "dsn", "bounces+g1a@news.example.com",
                 "<campaign.spring.0001@news.example.com>", id="gmail-user-unknown"),
    pytest.param("gmail_spam_blocked.eml", "reader@gmail.com", "bounce", "spam_detected", False,
                 "5.7.1", "dsn", "bounces+g2b@news.example.com",
                 "<campaign.spring.0002@news.example.com>", id="gmail-spam"),
    pytest.param("gmail_dmarc.eml", "friend@gmail.com", "bounce", "auth_failure", False,
                 "5.7.26", "dsn", "bounces+g3c@news.example.com", None, id="gmail-dmarc"),
    pytest.param("office365_recipient_not_found.eml", "jdoe@contoso.com", "bounce",
                 "user_unknown", True, "5.1.10", "dsn", "bounces+o365x@news.example.com",
                 "<campaign.spring.0003@news.example.com>", id="office365-recipient-not-found"),
    pytest.param("exchange2010_text.eml", "kim.lee@corp.example.org", "bounce", "user_unknown",
                 True, "5.1.1", "exchange", "bounces+ex10@news.example.com",
                 "<campaign.spring.0004@news.example.com>", id="exchange-text"),
    pytest.param("postfix_mailbox_full.eml", "full.box@example.net", "bounce", "mailbox_full",
                 False, "5.2.2", "dsn", "bounces+pf01@news.example.com",
                 "<campaign.spring.0005@news.example.com>", id="postfix-mailbox-full"),
    pytest.param("postfix_delayed_greylist.eml", "slow@example.org", "delay", "greylisted",
                 False, "4.7.1", "dsn", "bounces+pf02@news.example.com", None,
                 id="postfix-delay-greylisted"),
    pytest.param("exim_unrouteable.eml", "someone@no-such-domain.example", "bounce",
                 "host_unknown", True, None, "exim", "bounces+ex01@news.example.com",
                 "<campaign.spring.0006@news.example.com>", id="exim-unrouteable"),
    pytest.param("exim_quota_retry.eml", "anna.schmidt@example.de", "delay", "mailbox_full",
                 False, None, "exim", "bounces+ex02@news.example.com", None,
                 id="exim-delay-warning"),
    pytest.param("sendmail_user_unknown.eml", "gone.student@example.edu", "bounce",
                 "user_unknown", True, "5.1.1", "dsn", "bounces+sm01@news.example.com",
                 "<campaign.spring.0007@news.example.com>", id="sendmail-dsn"),
    pytest.param("qmail_no_mailbox.eml", "mate@example.com.au", "bounce", "user_unknown", True,
                 "5.1.1", "qmail", "bounces+qm01@news.example.com",
                 "<campaign.spring.0008@news.example.com>", id="qmail"),
    pytest.param("yahoo_user_unknown.eml", "notthere@yahoo.com", "bounce", "user_unknown", True,
                 None, "yahoo", "bounces+yh01@news.example.com",
                 "<campaign.spring.0009@news.example.com>", id="yahoo"),
    pytest.param("amazon_ses_bounce.eml", "closed@example.com", "bounce", "user_unknown", True,
                 "5.1.1", "dsn", "bounces+ses01@news.example.com",
                 "<campaign.spring.0010@news.example.com>", id="amazon-ses"),
    pytest.param("aol_policy_block.eml", "reader@aol.com", "bounce", "policy", False, "5.7.9",
                 "aol", "bounces+aol01@news.example.com", None, id="aol-policy"),
    pytest.param("groupwise_text.eml", "clerk@gw.example.gov", "bounce", "user_unknown", True,
                 None, "groupwise", "bounces+gw01@news.example.com",
                 "<campaign.spring.0011@news.example.com>", id="groupwise"),
    pytest.param("lotus_domino.eml", "pat.morgan@notes.example.com", "bounce", "user_unknown",
                 True, None, "lotus_domino", "bounces+ln01@news.example.com", None,
                 id="lotus-domino"),
    pytest.param("arf_yahoo_complaint.eml", "annoyed@yahoo.com", "complaint", "complaint", True,
                 None, "arf", "bounces+arf01@news.example.com",
                 "<campaign.spring.0012@news.example.com>", id="arf-complaint"),
    pytest.param("arf_redacted_headers_only.eml", "unhappy@hotmail.com", "complaint",
                 "complaint", True, None, "arf", "bounces+arf02@news.example.com",
                 "<campaign.spring.0013@news.example.com>", id="arf-headers-only"),
    pytest.param("auto_reply_rfc3834.eml", "jordan@example.org", "auto_reply", "auto_reply",
                 False, None, "rfc3834", "bounces+ar01@news.example.com",
                 "<campaign.spring.0014@news.example.com>", id="auto-reply-rfc3834"),
    pytest.param("auto_reply_outlook_ooo.eml", "sam.rivera@corp.example.org", "auto_reply",
                 "auto_reply", False, None, "auto_reply", "bounces+ar02@news.example.com",
                 "<campaign.spring.0015@news.example.com>", id="auto-reply-out-of-office"),
    pytest.param("dsn_delivered.eml", "happy@example.net", "delivered", "delivered", False,
                 "2.0.0", "dsn", "bounces+ok01@news.example.com", None, id="dsn-delivered"),
    pytest.param("forwarded_dsn.eml", "departed@example.com", "bounce", "user_unknown", True,
                 "5.1.1", "dsn", "bounces+fw01@news.example.com", None, id="forwarded-dsn"),
]


@pytest.mark.parametrize(
    ("name", "recipient", "kind", "reason", "hard", "status", "fmt", "bounce_to", "message_id"),
    PROVIDER_CASES,
)
def test_provider_formats(
    name: str,
    recipient: str,
    kind: str,
    reason: str,
    hard: bool,
    status: str | None,
    fmt: str,
    bounce_to: str,
    message_id: str | None,
) -> None:
    records = parse_bounce(fixture_bytes(name))
    assert len(records) == 1
    record = records[0]
    assert (record.recipient, record.kind, record.reason, record.hard) == (
        recipient, kind, reason, hard
    )
    assert record.status == status
    assert record.format == fmt
    assert record.bounce_to == bounce_to
    assert record.original_message_id == message_id
    assert record.reason in REASONS
    assert record.arrived_at is not None and record.arrived_at.tzinfo is not None


def test_dsn_fields_are_read() -> None:
    [record] = parse_bounce(fixture_bytes("postfix_mailbox_full.eml"))
    assert record.reply_code == 552
    assert record.remote_mta == "mx1.example.net"
    assert record.reporting_mta == "mail.news.example.com"
    assert record.diagnostic is not None and "Mailbox full" in record.diagnostic
    assert record.arrived_at == dt.datetime(2026, 3, 5, 10, 0, tzinfo=dt.UTC)


def test_multi_recipient_dsn_gives_one_row_each_with_its_own_kind() -> None:
    records = parse_bounce(fixture_bytes("multi_recipient_dsn.eml"))
    assert [(r.recipient, r.kind, r.reason, r.hard) for r in records] == [
        ("a1@example.com", "bounce", "user_unknown", True),
        ("a2@example.com", "delay", "mailbox_full", False),
    ]


def test_parse_accepts_str_and_message_objects() -> None:
    raw = fixture_bytes("qmail_no_mailbox.eml")
    from_bytes = parse_bounce(raw)
    from_str = parse_bounce(raw.decode("utf-8"))
    from_message = parse_bounce(email.message_from_bytes(raw, policy=email.policy.default))
    assert from_bytes == from_str == from_message


def test_parse_refuses_a_wrong_type_with_a_sentence() -> None:
    with pytest.raises(InputError, match=r"parse_bounce needs the raw message as bytes or str"):
        parse_bounce(42)  # type: ignore[arg-type]


def test_public_names_are_exported() -> None:
    assert smtpkit.parse_bounce is parse_bounce
    assert smtpkit.BounceRecord is BounceRecord
    assert smtpkit.apply_bounces is apply_bounces


# --- classification ---------------------------------------------------------------------------

CLASSIFY_CASES = [
    pytest.param("550 5.1.1 <x@example.com>: Recipient address rejected: User unknown",
                 "user_unknown", True, id="user-unknown"),
    pytest.param("550 No such user here", "user_unknown", True, id="no-such-user"),
    pytest.param("550 5.1.1 The email account that you tried to reach does not exist",
                 "user_unknown", True, id="gmail-does-not-exist"),
    pytest.param("550 5.2.1 The email account that you tried to reach is disabled",
                 "mailbox_disabled", True, id="account-disabled"),
    pytest.param("553 5.1.3 Bad recipient address syntax", "bad_address", True,
                 id="bad-syntax"),
    pytest.param("Host or domain name not found. Name service error for name=x.example type=MX",
                 "host_unknown", True, id="host-not-found"),
    pytest.param("552 5.2.2 Mailbox full", "mailbox_full", False, id="mailbox-full"),
    pytest.param("The user's mailfolder is full", "mailbox_full", False, id="mailfolder-full"),
    pytest.param("552 5.3.4 Message size exceeds fixed maximum message size",
                 "message_too_large", False, id="too-large"),
    pytest.param("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
                 "zen.spamhaus.org", "blocked", False, id="spamhaus-block"),
    pytest.param("550 5.7.1 Message rejected as spam by Content Filtering", "spam_detected",
                 False, id="spam"),
    pytest.param("554 5.7.0 Virus found in message", "virus_detected", False, id="virus"),
    pytest.param("550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC "
                 "policy", "auth_failure", False, id="dmarc"),
    pytest.param("550 5.7.23 SPF validation failed", "auth_failure", False, id="spf"),
    pytest.param("554 5.7.1 <x@example.com>: Relay access denied", "policy", False,
                 id="relay-denied"),
    pytest.param("421 4.7.0 Too many connections from your IP, slow down", "rate_limited",
                 False, id="rate-limited"),
    pytest.param("451 4.7.1 Greylisted, please try again later", "greylisted", False,
                 id="greylisted"),
    pytest.param("Message has been in the queue too long", "expired", False, id="expired"),
    pytest.param("connect to mx.example.com[192.0.2.1]:25: Connection refused",
                 "network_error", False, id="connection-refused"),
    pytest.param("554 5.4.6 Too many hops 26 (25 max)", "mail_loop", False, id="loop"),
    pytest.param("Command died with status 17", "system_error", False, id="command-died"),
    pytest.param("554 5.6.0 Attachment type not allowed", "content_rejected", False,
                 id="attachment"),
    pytest.param("550 Something went wrong", "other", False, id="unclassified"),
]


def _dsn(status: str, diagnostic: str, action: str = "failed") -> bytes:
    """A minimal RFC 3464 report; an empty diagnostic or action leaves that field out."""
    fields = f"Final-Recipient: rfc822; x@example.com\nStatus: {status}\n"
    if action:
        fields += f"Action: {action}\n"
    if diagnostic:
        fields += f"Diagnostic-Code: smtp; {diagnostic}\n"
    return (
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces+c1@news.example.com\n"
        "Subject: Undelivered Mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nThe message could not be delivered.\n\n--b\n"
        "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"{fields}\n--b--\n"
    ).encode()


@pytest.mark.parametrize(("diagnostic", "reason", "hard"), CLASSIFY_CASES)
def test_reason_classification(diagnostic: str, reason: str, hard: bool) -> None:
    [record] = parse_bounce(_dsn("5.0.0", diagnostic))
    assert (record.reason, record.hard) == (reason, hard)


@pytest.mark.parametrize(
    ("status", "diagnostic", "action", "kind", "reason", "hard"),
    [
        pytest.param("5.1.1", "", "failed", "bounce", "user_unknown", True, id="code-only"),
        pytest.param("5.3.0", "553 No such user here", "failed", "bounce", "user_unknown", True,
                     id="text-beats-generic-code"),
        pytest.param("4.4.7", "delivery time expired", "failed", "bounce", "expired", False,
                     id="action-failed-beats-class-4"),
        pytest.param("5.1.1", "User unknown", "delayed", "delay", "user_unknown", False,
                     id="delay-is-never-hard"),
        pytest.param("4.2.2", "", "", "delay", "mailbox_full", False, id="class-4-no-action"),
    ],
)
def test_code_text_and_action_precedence(
    status: str, diagnostic: str, action: str, kind: str, reason: str, hard: bool
) -> None:
    [record] = parse_bounce(_dsn(status, diagnostic, action))
    assert (record.kind, record.reason, record.hard) == (kind, reason, hard)


def test_every_hard_reason_is_documented() -> None:
    assert HARD_REASONS <= set(REASONS)
    assert len([r for r in REASONS if r not in {"delivered", "complaint", "auto_reply"}]) >= 20


# --- bad input --------------------------------------------------------------------------------


def _truncated() -> bytes:
    raw = fixture_bytes("postfix_mailbox_full.eml")
    return raw[: raw.index(b"Action: failed")]


BAD_INPUT = [
    pytest.param(b"", "malformed", id="empty"),
    pytest.param(b"   \r\n\r\n", "malformed", id="blank"),
    pytest.param(bytes(random.Random(7).randrange(256) for _ in range(5000)), "malformed",
                 id="binary-junk"),
    pytest.param(b"\x00" * 64 + b"Subject: x\n\nbody", "malformed", id="nul-bytes"),
    pytest.param(b"Subject: hello\nFrom: friend@example.org\n\nJust saying hi.\n",
                 "not_a_bounce", id="ordinary-mail"),
    pytest.param(b"From: MAILER-DAEMON@x.example\nSubject: failure notice\n"
                 b"Content-Type: multipart/report; boundary=\"never-closed\"\n\n--never-closed\n"
                 b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;",
                 None, id="truncated-mime"),
    pytest.param(b"From: MAILER-DAEMON@x.example\nSubject: Undelivered\n"
                 b"Content-Type: text/plain; charset=x-no-such-charset\n"
                 b"Content-Transfer-Encoding: base64\n\n%%%not base64%%%\n", None,
                 id="unknown-charset-bad-base64"),
    pytest.param(b"From: MAILER-DAEMON@x.example\nSubject: Undelivered\n"
                 b"Content-Type: multipart/mixed\n\n<ann@example.net>: unknown user\n",
                 None, id="multipart-without-boundary"),
    pytest.param(b"From: =?utf-8?q?broken\xff?= <MAILER-DAEMON@x.example>\n"
                 b"Subject: =?x-unknown?b?AAAA?=\nContent-Type: text/plain; charset=utf-8\n\n"
                 b"<b\xe4r@example.net>: \xff\xfe unknown user\n", None, id="wrong-charsets"),
]


@pytest.mark.parametrize(("raw", "unparsed_reason"), BAD_INPUT)
def test_bad_input_never_raises(raw: bytes, unparsed_reason: str | None) -> None:
    records = parse_bounce(raw)
    assert records, "every message gives at least one row"
    for record in records:
        assert record.kind in smtpkit.bounces.KINDS
        assert record.reason in REASONS
    if unparsed_reason is not None:
        assert [(r.kind, r.reason) for r in records] == [("unparsed", unparsed_reason)]
        assert records[0].diagnostic


ENCODINGS = [
    pytest.param(lambda raw: raw.replace(b"\n", b"\r\n"), id="crlf-line-endings"),
    pytest.param(lambda raw: raw, id="lf-line-endings"),
]


@pytest.mark.parametrize("transform", ENCODINGS)
def test_line_endings_do_not_matter(transform: object) -> None:
    raw = transform(fixture_bytes("postfix_mailbox_full.eml"))  # type: ignore[operator]
    [record] = parse_bounce(raw)
    assert (record.recipient, record.reason, record.original_message_id) == (
        "full.box@example.net", "mailbox_full", "<campaign.spring.0005@news.example.com>"
    )


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        pytest.param("base64", b"PGJvYkBleGFtcGxlLm5ldD46CjU1MCA1LjEuMSBVc2VyIHVua25vd24K",
                     id="base64"),
        pytest.param("quoted-printable", b"<bob@example.net>:=\n\n550 5.1.1 User unkn=\nown\n",
                     id="quoted-printable"),
    ],
)
def test_transfer_encoded_notice_is_decoded(encoding: str, body: bytes) -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces+q@news.example.com\n"
        b"Subject: failure notice\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="zz"\n\n--zz\n'
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: "
        + encoding.encode() + b"\n\n" + body + b"\n--zz--\n"
    )
    [record] = parse_bounce(raw)
    assert (record.recipient, record.status, record.reason) == (
        "bob@example.net", "5.1.1", "user_unknown"
    )


def test_truncated_report_still_reads_what_is_there() -> None:
    records = parse_bounce(_truncated())
    assert [r.recipient for r in records] == ["full.box@example.net"]


def test_multipart_without_boundary_is_read_as_text() -> None:
    records = parse_bounce(BAD_INPUT[7].values[0])  # type: ignore[index]
    assert [(r.recipient, r.reason) for r in records] == [("ann@example.net", "user_unknown")]


def test_fifty_megabyte_message_reads_the_head_only() -> None:
    head = fixture_bytes("postfix_mailbox_full.eml").replace(b"--\n", b"\n")
    filler = b"X" * 76 + b"\n"
    raw = head + filler * (50 * 1024 * 1024 // len(filler))
    assert len(raw) > MAX_PARSE_BYTES
    records = parse_bounce(raw)
    assert [(r.recipient, r.kind, r.reason) for r in records] == [
        ("full.box@example.net", "bounce", "mailbox_full")
    ]


def test_fifty_megabyte_junk_is_unparsed_with_the_size_in_the_diagnostic() -> None:
    raw = b"Subject: big\n\n" + b"A" * (50 * 1024 * 1024)
    [record] = parse_bounce(raw)
    assert (record.kind, record.reason) == ("unparsed", "not_a_bounce")
    assert record.diagnostic is not None and "only the first" in record.diagnostic


# --- sources ------------------------------------------------------------------------------------


def test_read_bounces_from_folder_of_eml(tmp_path: Path) -> None:
    for name in ("qmail_no_mailbox.eml", "arf_yahoo_complaint.eml"):
        (tmp_path / name).write_bytes(fixture_bytes(name))
    (tmp_path / "notes.txt").write_text("not a message")
    frame = read_bounces(tmp_path)
    assert list(frame.columns) == list(BOUNCE_COLUMNS)
    assert frame["recipient"].tolist() == ["annoyed@yahoo.com", "mate@example.com.au"]
    assert frame["source"].tolist() == [
        str(tmp_path / "arf_yahoo_complaint.eml"), str(tmp_path / "qmail_no_mailbox.eml")
    ]
    assert str(frame["arrived_at"].dtype) == "datetime64[us, UTC]"
    assert str(frame["hard"].dtype) == "boolean"


def test_read_bounces_from_single_eml_file() -> None:
    frame = read_bounces(DATA / "multi_recipient_dsn.eml")
    assert frame["kind"].tolist() == ["bounce", "delay"]


def test_read_bounces_from_mbox(tmp_path: Path) -> None:
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for name in ("yahoo_user_unknown.eml", "exim_unrouteable.eml", "auto_reply_rfc3834.eml"):
        box.add(fixture_bytes(name))
    box.flush()
    box.close()
    frame = read_bounces(path)
    assert sorted(frame["kind"].tolist()) == ["auto_reply", "bounce", "bounce"]
    assert all(s.startswith(str(path) + "#") for s in frame["source"])


def test_read_bounces_from_maildir_and_since(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for name in ("gmail_user_unknown.eml", "postfix_mailbox_full.eml", "lotus_domino.eml"):
        box.add(fixture_bytes(name))
    box.add(b"garbage without headers \x00\x01")
    frame = read_bounces(tmp_path / "Maildir")
    assert len(frame) == 4
    assert (frame["kind"] == "unparsed").sum() == 1
    later = read_bounces(tmp_path / "Maildir", since="2026-03-05")
    assert set(later["recipient"].dropna()) == {"full.box@example.net",
                                                "pat.morgan@notes.example.com"}
    assert later["kind"].tolist().count("unparsed") == 1, "undated rows are kept"
    assert len(read_bounces(box)) == 4, "a mailbox.Mailbox works too"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("/no/such/folder", r"does not exist; give a \.eml file", id="missing"),
        pytest.param(42, r"read_bounces needs a path", id="wrong-type"),
    ],
)
def test_read_bounces_refuses_bad_sources(source: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_bounces(source)


def test_read_bounces_refuses_a_bad_since() -> None:
    with pytest.raises(InputError, match=r"since must be a date or datetime"):
        read_bounces(DATA, since="not a date")


def test_bounce_frame_of_no_records_has_the_columns() -> None:
    frame = bounces_frame([])
    assert list(frame.columns) == list(BOUNCE_COLUMNS) and frame.empty


# --- matching -----------------------------------------------------------------------------------


def _outcomes() -> pd.DataFrame:
    rows = []
    for n, (rcpt, status) in enumerate(
        [("ann@example.net", "sent"), ("bob@example.net", "sent"), ("cy@example.net", "sent"),
         ("dee@example.net", "sent"), ("eve@example.net", "failed"), ("fay@example.net", "sent")]
    ):
        rows.append({"recipient": rcpt, "status": status, "smtp_code": 250,
                     "message_id": f"<m{n}@news.example.com>",
                     "envelope_sender": f"bounces+T{n}@news.example.com"})
    return outcomes_frame(rows)


def _report(**fields: object) -> BounceRecord:
    base: dict[str, object] = {"recipient": None, "kind": "bounce", "reason": "user_unknown",
                               "hard": True}
    base.update(fields)
    return BounceRecord(**base)  # type: ignore[arg-type]


def test_apply_bounces_matches_verp_then_message_id_then_recipient() -> None:
    outcomes = _outcomes()
    before = outcomes.copy()
    reports = bounces_frame([
        _report(bounce_to="BOUNCES+t0@News.Example.com", recipient="alias@elsewhere.example"),
        _report(original_message_id="<m1@news.example.com>", kind="complaint",
                reason="complaint"),
        _report(recipient="CY@example.net", kind="delay", reason="mailbox_full", hard=False),
        _report(recipient="dee@example.net", kind="auto_reply", reason="auto_reply", hard=False),
        _report(recipient="eve@example.net"),
        _report(recipient="stranger@example.org", bounce_to="bounces+zzz@news.example.com"),
    ])
    result = apply_bounces(outcomes, reports)
    pd.testing.assert_frame_equal(outcomes, before)
    assert list(result.columns) == [*OUTCOME_COLUMNS, *APPLIED_COLUMNS]
    assert result["status"].tolist() == ["bounced", "complained", "sent", "sent", "failed", "sent"]
    assert result["bounce_matched_by"].tolist()[:5] == ["verp", "message_id", "recipient",
                                                        "recipient", "recipient"]
    assert result["bounce_kind"].tolist()[:5] == ["bounce", "complaint", "delay", "auto_reply",
                                                  "bounce"]
    assert pd.isna(result.loc[5, "bounce_kind"])
    assert result.loc[0, "reason"] == "user_unknown"
    assert bool(result.loc[0, "hard"]) and not bool(result.loc[2, "hard"])
    orphans = bounces_frame(result.attrs["orphans"])
    assert orphans["recipient"].tolist() == ["stranger@example.org"]
    assert orphans["bounce_to"].tolist() == ["bounces+zzz@news.example.com"]
    both = pd.concat([result, apply_bounces(outcomes, reports)])  # attrs stay comparable
    assert len(both) == 2 * len(outcomes) and len(both.attrs["orphans"]) == 1


def test_complaint_wins_over_bounce_and_latest_among_equals() -> None:
    outcomes = _outcomes().iloc[:1]
    early = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    late = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    reports = bounces_frame([
        _report(recipient="ann@example.net", kind="complaint", reason="complaint",
                arrived_at=early),
        _report(recipient="ann@example.net", arrived_at=late),
        _report(recipient="ann@example.net", kind="delay", reason="mailbox_full", hard=False,
                arrived_at=late),
    ])
    result = apply_bounces(outcomes, reports)
    assert result.loc[0, "status"] == "complained"
    assert result.loc[0, "bounced_at"] == pd.Timestamp(early)


def test_apply_bounces_with_the_files_end_to_end() -> None:
    outcomes = outcomes_frame([
        {"recipient": "nosuchperson@gmail.com", "status": "sent",
         "envelope_sender": "bounces+g1a@news.example.com"},
        {"recipient": "slow@example.org", "status": "sent",
         "envelope_sender": "bounces+pf02@news.example.com"},
        {"recipient": "annoyed@yahoo.com", "status": "sent",
         "envelope_sender": "bounces+arf01@news.example.com"},
    ])
    result = apply_bounces(outcomes, read_bounces(DATA))
    assert result["status"].tolist() == ["bounced", "sent", "complained"]
    assert result["bounce_kind"].tolist() == ["bounce", "delay", "complaint"]
    assert len(result.attrs["orphans"]) == len(read_bounces(DATA)) - 3


@pytest.mark.parametrize(
    ("outcomes", "bounces", "error", "message"),
    [
        pytest.param(pd.DataFrame({"email": []}), bounces_frame([]), MissingColumnError,
                     r"The outcome frame has no column 'recipient', 'status'; it has 'email'\.",
                     id="outcomes-missing-columns"),
        pytest.param(_outcomes(), pd.DataFrame({"x": [1]}), MissingColumnError,
                     r"The bounce frame has no column 'recipient', 'kind'", id="bounces-wrong"),
        pytest.param([], bounces_frame([]), InputError, r"must be a pandas DataFrame",
                     id="not-a-frame"),
    ],
)
def test_apply_bounces_refuses_bad_frames(
    outcomes: object, bounces: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        apply_bounces(outcomes, bounces)  # type: ignore[arg-type]


def test_apply_bounces_records_in_the_journal_once(tmp_path: Path) -> None:
    from smtpkit.journal import Journal

    path = tmp_path / "campaigns.db"
    reports = read_bounces(DATA)
    apply_bounces(_outcomes(), reports, journal=path, campaign="spring")
    apply_bounces(_outcomes(), reports, journal=str(path), campaign="spring")  # idempotent
    recorded = Journal(path).bounces("spring")
    assert len(recorded) == len(reports)
    assert set(suppressions(path)["email"]) == set(suppressions(reports)["email"])
    assert set(suppressions(Journal(path))["email"]) == set(suppressions(reports)["email"])


def test_apply_bounces_refuses_a_wrong_journal() -> None:
    from smtpkit.errors import JournalError

    with pytest.raises(JournalError, match=r"journal= must be a journal file path or a Journal"):
        apply_bounces(_outcomes(), bounces_frame([]), journal=3.5)


def test_cli_bounces_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from smtpkit.cli import main

    target = tmp_path / "bounces.csv"
    assert main(["bounces", str(DATA), "-o", str(target), "--since", "2026-03-01"]) == 0
    frame = pd.read_csv(target)
    assert list(frame.columns) == list(BOUNCE_COLUMNS)
    assert len(frame) == len(read_bounces(DATA))
    out = capsys.readouterr().out
    assert f"{len(frame)} row(s)" in out and "user_unknown" in out


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        pytest.param(["bounces", "imaps://bounces@127.0.0.1/INBOX"], {},
                     "Set IMAP_PASSWORD", id="imap-needs-password"),
        pytest.param(["bounces", "imaps://127.0.0.1/INBOX"], {"IMAP_PASSWORD": "x"},
                     "imaps://USER@HOST", id="imap-needs-user"),
        pytest.param(["bounces", "/no/such/maildir"], {}, "does not exist", id="missing-path"),
    ],
)
def test_cli_bounces_errors(
    argv: list[str], env: dict[str, str], message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from smtpkit.cli import main

    monkeypatch.delenv("IMAP_PASSWORD", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("address", "token"),
    [
        pytest.param("bounces+abc123@example.com", "abc123", id="plain"),
        pytest.param("<Bounces+AbC@Example.com>", "AbC", id="brackets-case-kept"),
        pytest.param("news@example.com", None, id="no-token"),
        pytest.param("bounces+@example.com", None, id="empty-token"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_verp_token(address: str | None, token: str | None) -> None:
    assert verp_token(address) == token


def test_accessor_applies_bounces() -> None:
    reports = bounces_frame([_report(recipient="ann@example.net")])
    assert _outcomes().smtpkit.apply_bounces(reports).loc[0, "status"] == "bounced"


# --- suppressions -------------------------------------------------------------------------------


def test_suppressions_lists_hard_bounces_and_complaints_once() -> None:
    when = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    frame = bounces_frame([
        _report(recipient="Ann@Example.net", arrived_at=when),
        _report(recipient="ann@example.net", kind="complaint", reason="complaint",
                arrived_at=when + dt.timedelta(days=1)),
        _report(recipient="bob@example.net", reason="mailbox_full", hard=False),
        _report(recipient="cy@example.net", kind="delay", reason="user_unknown", hard=False),
        _report(recipient="dee@example.net", kind="auto_reply", reason="auto_reply", hard=False),
        _report(recipient=None),
    ])
    result = suppressions(frame)
    assert list(result.columns) == ["email", "reason", "kind", "when", "diagnostic"]
    assert result[["email", "kind"]].values.tolist() == [["ann@example.net", "complaint"]]


def test_suppressions_of_the_fixture_folder() -> None:
    emails = set(suppressions(read_bounces(DATA))["email"])
    assert "nosuchperson@gmail.com" in emails and "annoyed@yahoo.com" in emails
    assert "full.box@example.net" not in emails and "slow@example.org" not in emails
