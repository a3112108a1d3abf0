"""Late mail from the Sandbox: RFC 3464 bounces, RFC 5965 complaints and RFC 3834 auto-replies.

A message is sent through a real Sandbox with smtplib; the reports are read back from the Maildir
with the stdlib ``mailbox`` and ``email`` packages and their fields checked.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import mailbox
import os
import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from smtpkit.errors import SandboxError
from smtpkit.sandbox import LATE_MAIL_COLUMNS, Domain, Sandbox, World

VERP = "bounces+c42.spring@example.com"
ORIGINAL_ID = "<spring-0042@example.com>"
ORIGINAL = (
    f"From: News <news@example.com>\r\nTo: someone\r\nMessage-ID: {ORIGINAL_ID}\r\n"
    "References: <earlier@example.com>\r\nSubject: Spring sale\r\n"
    "List-Unsubscribe: <mailto:unsub@example.com>\r\n\r\nHello!\r\n"
)
WORLD = World(
    addresses={
        "gone@example.org": "bounce_later",
        "angry@example.org": "complain_later",
        "away@example.org": "auto_reply",
        "fine@example.org": "accept",
    },
    late_delay=(0.05, 0.2),
)


@contextlib.contextmanager
def sent(
    box: Sandbox, recipients: list[str], *, sender: str = VERP, body: str = ORIGINAL
) -> Iterator[None]:
    with smtplib.SMTP(box.host, box.port, timeout=10) as smtp:
        assert smtp.sendmail(sender, recipients, body) == {}
    yield


def read_maildir(box: Sandbox) -> list[EmailMessage]:
    folder = mailbox.Maildir(box.mailbox, factory=None, create=False)
    return [
        email.message_from_bytes(folder.get_bytes(key), policy=email.policy.default)  # type: ignore[misc]
        for key in folder.keys()
    ]


@pytest.fixture(scope="module")
def reports() -> Iterator[tuple[Sandbox, dict[str, EmailMessage]]]:
    with Sandbox(WORLD, tls=False) as box:
        with sent(
            box, ["gone@example.org", "angry@example.org", "away@example.org", "fine@example.org"]
        ):
            box.wait_for_mail(3, timeout=10)
        by_kind: dict[str, EmailMessage] = {}
        for report in read_maildir(box):
            kind = report.get_param("report-type") or "auto_reply"
            by_kind[str(kind)] = report
        yield box, by_kind


def parts(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.iter_parts()]


def test_exactly_three_reports_addressed_to_the_verp_sender(
    reports: tuple[Sandbox, dict[str, EmailMessage]],
) -> None:
    box, by_kind = reports
    assert sorted(by_kind) == ["auto_reply", "delivery-status", "feedback-report"]
    for report in by_kind.values():
        assert report["To"] == VERP
        assert report["Delivered-To"] == VERP
        assert report["Return-Path"] == "<>"
        assert report["Message-ID"] and report["Date"]
    late = box.late_mail()
    assert tuple(late.columns) == LATE_MAIL_COLUMNS
    assert sorted(late["kind"]) == ["arf", "auto_reply", "dsn"]
    assert late["to"].eq(VERP).all()
    assert late["original_message_id"].eq(ORIGINAL_ID).all()
    assert all(Path(path).is_file() and Path(path).parent.name == "new" for path in late["path"])
    assert (late["written_at"] >= late["due_at"]).all()
    frame = box.deliveries().set_index("recipient")
    assert frame.loc["gone@example.org", "late_message"] == "dsn"
    assert frame.loc["angry@example.org", "late_message"] == "arf"
    assert frame.loc["away@example.org", "late_message"] == "auto_reply"
    assert frame["late_message"].isna().sum() == 1  # fine@example.org gets nothing late


def test_dsn_is_an_rfc3464_report(reports: tuple[Sandbox, dict[str, EmailMessage]]) -> None:
    _, by_kind = reports
    dsn = by_kind["delivery-status"]
    assert dsn.get_content_type() == "multipart/report"
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert dsn["From"].addresses[0].username == "MAILER-DAEMON"
    assert parts(dsn) == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    human, status, headers = dsn.iter_parts()
    blocks: list[Message] = status.get_payload()  # type: ignore[assignment]
    per_message, per_recipient = blocks
    assert per_message["Reporting-MTA"] == "dns; mx1.example.org"
    assert per_message["Arrival-Date"]
    assert per_recipient["Original-Recipient"] == "rfc822; gone@example.org"
    assert per_recipient["Final-Recipient"] == "rfc822; gone@example.org"
    assert per_recipient["Action"] == "failed"
    code, status_code, _ = WORLD.late_failure("gone@example.org")
    assert per_recipient["Status"] == status_code
    assert re.fullmatch(r"5\.\d\.\d+", per_recipient["Status"])
    diagnostic = " ".join(per_recipient["Diagnostic-Code"].split())
    assert diagnostic.startswith(f"smtp; {code} {status_code} <gone@example.org>:")
    assert per_recipient["Remote-MTA"] == "dns; mailstore.example.org"
    original = headers.get_content()
    assert f"Message-ID: {ORIGINAL_ID}" in original
    assert "Subject: Spring sale" in original
    assert "Hello!" not in original  # headers only
    assert "gone@example.org" in human.get_content()


def test_arf_is_an_rfc5965_abuse_report(reports: tuple[Sandbox, dict[str, EmailMessage]]) -> None:
    _, by_kind = reports
    arf = by_kind["feedback-report"]
    assert arf.get_content_type() == "multipart/report"
    assert parts(arf) == ["text/plain", "message/feedback-report", "message/rfc822"]
    _, feedback, attached = arf.iter_parts()
    fields = feedback.get_payload()[0]  # type: ignore[index]
    assert fields["Feedback-Type"] == "abuse"
    assert fields["Version"] == "1"
    assert fields["User-Agent"]
    assert fields["Original-Mail-From"] == f"<{VERP}>"
    assert fields["Original-Rcpt-To"] == "<angry@example.org>"
    assert fields["Source-IP"] == "127.0.0.1"
    assert fields["Reported-Domain"] == "example.com"
    assert fields["Arrival-Date"]
    original = attached.get_content()
    assert original["Message-ID"] == ORIGINAL_ID
    assert original.get_content().strip() == "Hello!"


def test_auto_reply_follows_rfc3834(reports: tuple[Sandbox, dict[str, EmailMessage]]) -> None:
    _, by_kind = reports
    reply = by_kind["auto_reply"]
    assert reply.get_content_type() == "text/plain"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["From"] == "away@example.org"
    assert reply["Subject"] == "Auto: Spring sale"
    assert reply["In-Reply-To"] == ORIGINAL_ID
    assert reply["References"].split() == ["<earlier@example.com>", ORIGINAL_ID]
    assert "out of the office" in reply.get_content()


@pytest.mark.parametrize(
    ("sender", "body", "event"),
    [
        pytest.param("", ORIGINAL, "late_mail_suppressed_null_sender", id="null-sender"),
        pytest.param(
            VERP,
            "Auto-Submitted: auto-generated\r\n" + ORIGINAL,
            "auto_reply_suppressed",
            id="automatic-original",
        ),
    ],
)
def test_no_auto_reply_to_automatic_mail(sender: str, body: str, event: str) -> None:
    with Sandbox(WORLD, tls=False) as box:
        with sent(box, ["away@example.org"], sender=sender, body=body):
            pass
        assert box.mail_pending == 0 and box.flush_mail() == 0
        assert read_maildir(box) == []
        assert list(box.events()["event"]).count(event) == 1
        assert len(box.deliveries()) == 1  # the message itself was still delivered


def test_flush_writes_pending_mail_at_once_and_wait_times_out_clearly() -> None:
    world = World(addresses={"gone@example.org": "bounce_later"}, late_delay=(30, 40))
    with Sandbox(world, tls=False) as box:
        with sent(box, ["gone@example.org"]):
            pass
        assert (box.mail_pending, box.mail_written) == (1, 0)
        with pytest.raises(
            SandboxError, match=r"Only 0 of 1 late messages were written within 0\.2 s"
        ):
            box.wait_for_mail(1, timeout=0.2)
        assert box.flush_mail() == 1
        assert (box.mail_pending, box.mail_written) == (0, 1)
        assert box.wait_for_mail(1, timeout=0.1) == 1
        [bounce] = read_maildir(box)
        assert bounce["To"] == VERP


def test_a_given_mailbox_keeps_late_mail_after_stop(tmp_path: Path) -> None:
    world = World(addresses={"away@example.org": "auto_reply"}, late_delay=(30, 40))
    folder = tmp_path / "bounces"
    with Sandbox(world, tls=False, mailbox=folder) as box:
        assert box.mailbox == folder
        with sent(box, ["away@example.org"]):
            pass
    # Stopping wrote the pending auto-reply instead of losing it; the folder stays.
    keys = mailbox.Maildir(folder, factory=None, create=False).keys()
    assert len(keys) == 1


def test_exit_without_stop_still_writes_late_mail_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "bounces"
    script = f"""
import smtplib
from smtpkit.sandbox import Sandbox, World
world = World(addresses={{"away@example.org": "auto_reply"}}, late_delay=(60, 60))
box = Sandbox(world, mailbox={str(folder)!r}).start()
with smtplib.SMTP(box.host, box.port) as smtp:
    smtp.sendmail("news@example.com", ["away@example.org"], "Subject: x\\r\\n\\r\\nhi\\r\\n")
print(box.ca_file)
"""  # exits with the sandbox still running
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    ca_file = done.stdout.strip()
    assert ca_file.endswith("sandbox-ca.pem") and not os.path.exists(ca_file)
    assert len(mailbox.Maildir(folder, factory=None, create=False).keys()) == 1
    assert done.stderr == ""


def test_default_temporary_mailbox_is_removed_by_stop() -> None:
    with Sandbox(WORLD, tls=False) as box:
        folder = box.mailbox
        assert (folder / "new").is_dir()
    assert not folder.exists()


def test_internationalized_recipient_gets_a_utf8_dsn() -> None:
    world = World(addresses={"用户@example.org": "bounce_later"}, late_delay=(0.0, 0.0))
    with Sandbox(world, tls=False) as box:
        with smtplib.SMTP(box.host, box.port, timeout=10) as smtp:
            smtp.sendmail(VERP, ["用户@example.org"], ORIGINAL.encode(), mail_options=["SMTPUTF8"])
        box.wait_for_mail(1, timeout=10)
        [dsn] = read_maildir(box)
        per_recipient = dsn.get_payload()[1].get_payload()[1]  # type: ignore[union-attr,index]
        assert per_recipient["Final-Recipient"] == "utf-8; 用户@example.org"


def test_default_world_bounces_vary_by_address() -> None:
    world = World.default()
    statuses = {world.late_failure(f"user{i}@gmail.com")[1] for i in range(200)}
    assert statuses == {"5.1.1", "5.2.2", "5.7.1"}
    delays = [world.late_delay_for(f"user{i}@gmail.com") for i in range(200)]
    assert 0.5 <= min(delays) < max(delays) <= 3.0


def test_rate_based_late_mail_in_a_busy_world() -> None:
    world = World(
        default_domain=Domain(bounce_later=0.2, complain_later=0.1, auto_reply=0.1),
        late_delay=(0.0, 0.05),
        seed=11,
    )
    recipients = [f"r{i}@example.net" for i in range(60)]
    expected = {r: world.outcome(r) for r in recipients}
    with Sandbox(world, tls=False) as box:
        with smtplib.SMTP(box.host, box.port, timeout=10) as smtp:
            for recipient in recipients:
                smtp.sendmail(VERP, [recipient], ORIGINAL.replace("0042", recipient))
        late_count = sum(o != "accept" for o in expected.values())
        assert late_count > 10
        box.wait_for_mail(late_count, timeout=10)
        late = box.late_mail()
        kinds = {"bounce_later": "dsn", "complain_later": "arf", "auto_reply": "auto_reply"}
        assert dict(zip(late["recipient"], late["kind"], strict=True)) == {
            r: kinds[o] for r, o in expected.items() if o != "accept"
        }
        assert len(read_maildir(box)) == late_count
