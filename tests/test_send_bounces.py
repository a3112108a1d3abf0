"""Bounces after a send: ``apply_bounces`` on the returned frame and the journal read back
(``smtpkit.outcomes``) tell the same story, row by row. Real SMTP against the Sandbox, real
late DSN / ARF / auto-reply messages in its Maildir, a real SQLite journal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import smtpkit
from smtpkit.bounces import apply_bounces, read_bounces
from smtpkit.sandbox import Rule, Sandbox, World
from smtpkit.send import send

TEMPLATE = smtpkit.Template(subject="Hello {first_name}", text="Hi {first_name}, news inside.",
                            sender="Shop News <news@shop.example>")


def test_apply_bounces_and_the_journal_agree_row_by_row(tmp_path: Path) -> None:
    # which late failure a "bounce_later" address gets depends on the address (World.late_failure):
    # user0 550 5.1.1 (hard), user3 552 5.2.2 (mailbox full: soft), user18 554 5.7.1
    world = World(addresses={
        "user0@example.com": "bounce_later",
        "user3@example.com": "bounce_later",
        "user5@example.com": "bounce_later",
        "user18@example.com": "bounce_later",
        "user7@example.com": "complain_later",
        "user8@example.com": "auto_reply",
        "user9@example.com": "user_unknown",
        "user11@example.com": Rule("drop_after_dot", times=1),
    }, late_delay=(0.0, 0.3))
    frame = pd.DataFrame({"email": [f"user{i}@example.com" for i in range(20)],
                          "first_name": [f"N{i}" for i in range(20)]},
                         index=pd.Index([f"c{i}" for i in range(20)], name="contact"))
    journal = tmp_path / "journal.db"
    with Sandbox(world, tls=False, mailbox=tmp_path / "Maildir") as box:
        sent = send(frame, TEMPLATE, box.config, campaign="spring", journal=journal,
                    progress=False)
        box.wait_for_mail(6, timeout=10)
        config = box.config
    reports = read_bounces(tmp_path / "Maildir")
    bounces = reports[reports["kind"] == "bounce"].set_index("recipient")
    assert set(bounces.index) == {f"user{i}@example.com" for i in (0, 3, 5, 18)}
    assert not bounces["hard"].all() and bounces["hard"].any()  # soft and hard failures
    applied = apply_bounces(sent, reports, journal=journal, campaign="spring")
    back = smtpkit.outcomes(journal, "spring")
    columns = ["recipient", "status", "reason"]
    pd.testing.assert_frame_equal(back[columns], applied[columns])
    by = applied.set_index("recipient")["status"]
    assert {by[f"user{i}@example.com"] for i in (0, 3, 5, 18)} == {"bounced"}
    assert by["user7@example.com"] == "complained"
    assert by["user8@example.com"] == "sent"  # an auto-reply changes nothing
    assert by["user9@example.com"] == "failed"
    assert by["user11@example.com"] == "unknown"  # no report: it stays unknown
    # the same from sending the same campaign again (nothing is left to send: the server is
    # gone and no connection is opened)
    again = send(frame, TEMPLATE, config, campaign="spring", journal=journal, progress=False)
    pd.testing.assert_frame_equal(again[columns], applied[columns])
    # only hard bounces and complaints are suppressed in the next campaign
    suppressed = smtpkit.journal.suppressed_addresses(journal)
    hard = set(bounces.index[bounces["hard"].astype(bool)])
    assert suppressed == hard | {"user7@example.com"}
