"""Bounce parsing speed: parse + classify messages per second, side by side in one run.

Workloads (each parsed in full, best of several rounds to shave off noise from other load):

* ``corpus``     the flufl.bounce corpus (103 real bounces of many MTAs), when present;
* ``fixtures``   smtpkit's own provider fixtures (tests/data/bounces);
* ``dsn``        generated RFC 3464 reports, as Postfix writes them, with the returned headers;
* ``text``       generated non-standard bounces (qmail style) that go through the text rules;
* ``stdlib``     the floor: only ``email.message_from_bytes`` on the generated DSNs (no
                 classification), to show what the parse itself costs.

Target: >= 2,000 messages/s for parse + classify (Go sisimai ~1,200/s, Perl ~450-660/s).

Run: ``.venv/bin/python bench/bounce_bench.py``
"""

from __future__ import annotations

import email
import email.policy
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtpkit.bounces import parse_bounce  # noqa: E402

TARGET = 2000.0
ROUNDS = 5


def generated_dsn(n: int) -> bytes:
    return (
        f"From: MAILER-DAEMON@mail.news.example.com (Mail Delivery System)\n"
        f"To: bounces+t{n}@news.example.com\nSubject: Undelivered Mail Returned to Sender\n"
        f"Date: Thu, 5 Mar 2026 10:00:{n % 60:02d} +0000\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B{n}"\n\n'
        f"--B{n}\nContent-Type: text/plain\n\nThis is the mail system at host "
        f"mail.news.example.com.\n\n<user{n}@example.net>: host mx.example.net[192.0.2.1] said: "
        f"550 5.1.1 <user{n}@example.net>: Recipient address rejected: User unknown\n\n"
        f"--B{n}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; "
        f"mail.news.example.com\nArrival-Date: Thu, 5 Mar 2026 10:00:00 +0000\n\n"
        f"Final-Recipient: rfc822; user{n}@example.net\nAction: failed\nStatus: 5.1.1\n"
        f"Remote-MTA: dns; mx.example.net\nDiagnostic-Code: smtp; 550 5.1.1 "
        f"<user{n}@example.net>: Recipient address rejected: User unknown\n\n"
        f"--B{n}\nContent-Type: text/rfc822-headers\n\nReturn-Path: <bounces+t{n}@news.example"
        f".com>\nMessage-ID: <m{n}@news.example.com>\nFrom: news@news.example.com\n"
        f"To: user{n}@example.net\nSubject: Spring offers\n\n--B{n}--\n"
    ).encode()


def generated_text(n: int) -> bytes:
    return (
        f"From: MAILER-DAEMON@mail.example.org\nTo: bounces+t{n}@news.example.com\n"
        f"Subject: failure notice\nDate: 8 Mar 2026 02:03:04 -0000\n\n"
        f"Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able to "
        f"deliver your message to the following addresses.\nThis is a permanent error; I've "
        f"given up. Sorry it didn't work out.\n\n<user{n}@example.org>:\nSorry, no mailbox here "
        f"by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\n"
        f"Return-Path: <bounces+t{n}@news.example.com>\nMessage-ID: <m{n}@news.example.com>\n"
        f"From: news@news.example.com\nTo: user{n}@example.org\nSubject: Spring offers\n\nHi\n"
    ).encode()


def rate(messages: list[bytes], work: Callable[[bytes], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for raw in messages:
            work(raw)
        best = min(best, time.perf_counter() - start)
    return len(messages) / best


def main() -> int:
    workloads: dict[str, list[bytes]] = {}
    corpus = ROOT.parent / "shared" / "corpora" / "flufl-bounce" / "data"
    if corpus.is_dir():
        workloads["corpus"] = [p.read_bytes() for p in sorted(corpus.glob("*.txt"))]
    fixtures = ROOT / "tests" / "data" / "bounces"
    workloads["fixtures"] = [p.read_bytes() for p in sorted(fixtures.glob("*.eml"))]
    workloads["dsn"] = [generated_dsn(n) for n in range(2000)]
    workloads["text"] = [generated_text(n) for n in range(2000)]

    def stdlib(raw: bytes) -> object:
        return email.message_from_bytes(raw, policy=email.policy.compat32)

    print(f"{'workload':<10} {'messages':>9} {'msgs/s':>10} {'vs target':>10}")
    results: dict[str, float] = {}
    for name, messages in workloads.items():
        results[name] = rate(messages, parse_bounce)
        print(f"{name:<10} {len(messages):>9} {results[name]:>10,.0f} "
              f"{results[name] / TARGET:>9.2f}x")
    floor = rate(workloads["dsn"], stdlib)
    print(f"{'stdlib':<10} {len(workloads['dsn']):>9} {floor:>10,.0f}  (email parse only)")
    print(f"parse+classify of a DSN costs {floor / results['dsn']:.1f}x the bare stdlib parse")
    print(f"vs Go sisimai ~1,200/s: dsn {results['dsn'] / 1200:.1f}x, "
          f"text {results['text'] / 1200:.1f}x")
    mixed = workloads.get("corpus", []) + workloads["dsn"]
    overall = rate(mixed, parse_bounce)
    print(f"corpus + generated DSNs together: {overall:,.0f} msgs/s "
          f"({len(mixed)} messages; target {TARGET:,.0f}/s: "
          f"{'met' if overall >= TARGET else 'MISSED'})")
    slowest = min(results.values())
    print(f"slowest workload {slowest:,.0f} msgs/s: "
          f"{'meets' if slowest >= TARGET else 'MISSES'} the {TARGET:,.0f}/s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
