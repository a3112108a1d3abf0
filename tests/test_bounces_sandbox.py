"""The Sandbox's late mail (DSN, ARF, auto-reply) read back from its Maildir and applied."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from smtpkit import sandbox
from smtpkit.bounces import apply_bounces, read_bounces, suppressions
from smtpkit.outcomes import outcomes_frame

PEOPLE = {
    "gone.later@example.com": "bounce_later",
    "angry@example.com": "complain_later",
    "away@example.com": "auto_reply",
    "fine@example.com": "accept",
}


def _send_one_per_recipient(box: object) -> list[dict[str, object]]:
    rows = []
    context = ssl.create_default_context(cafile=box.ca_file)  # type: ignore[attr-defined]
    with smtplib.SMTP(box.host, box.port, timeout=10) as client:  # type: ignore[attr-defined]
        client.starttls(context=context)
        for n, recipient in enumerate(PEOPLE):
            sender = f"bounces+tok{n}@news.example.com"
            message = EmailMessage()
            message["From"] = "Spring News <news@news.example.com>"
            message["To"] = recipient
            message["Subject"] = "Spring offers"
            message["Message-ID"] = f"<spring.{n}@news.example.com>"
            message.set_content("Hello")
            refused = client.send_message(message, from_addr=sender, to_addrs=[recipient])
            assert not refused
            rows.append({"recipient": recipient, "status": "sent", "smtp_code": 250,
                         "message_id": message["Message-ID"], "envelope_sender": sender})
    return rows


def test_sandbox_late_mail_round_trip() -> None:
    world = sandbox.World(addresses=dict(PEOPLE))
    with sandbox.Sandbox(world) as box:
        outcomes = outcomes_frame(_send_one_per_recipient(box))
        box.flush_mail()
        reports = read_bounces(box.mailbox)
    by_kind = dict(zip(reports["kind"], reports["recipient"], strict=False))
    assert by_kind["bounce"] == "gone.later@example.com"
    assert by_kind["complaint"] == "angry@example.com"
    assert by_kind["auto_reply"] == "away@example.com"
    assert not (reports["kind"] == "unparsed").any()
    assert set(reports["bounce_to"].str.lower()) <= {
        f"bounces+tok{n}@news.example.com" for n in range(len(PEOPLE))
    }

    result = apply_bounces(outcomes, reports)
    assert dict(zip(result["recipient"], result["status"], strict=True)) == {
        "gone.later@example.com": "bounced",
        "angry@example.com": "complained",
        "away@example.com": "sent",
        "fine@example.com": "sent",
    }
    assert result.attrs["orphans"] == []
    assert set(result["bounce_matched_by"].dropna()) == {"verp"}
    assert set(reports["original_message_id"]) == {f"<spring.{n}@news.example.com>"
                                                   for n in range(3)}
    # the sandbox's late bounce is a full mailbox (5.2.2): permanent, but not a bad address
    bounce = reports[reports["kind"] == "bounce"].iloc[0]
    assert (bounce["status"], bounce["reason"], bool(bounce["hard"])) == (
        "5.2.2", "mailbox_full", False
    )
    assert suppressions(reports)["email"].tolist() == ["angry@example.com"]
