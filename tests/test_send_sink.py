"""A high-volume campaign into Postfix's smtp-sink: a C SMTP server, not the one smtpkit embeds.

The send engine pipelines commands over its own protocol code; the other tests talk to aiosmtpd,
which shares Python's view of SMTP. Here a few thousand personalized messages go, pipelined over
16 connections, to ``smtp-sink`` dumping every transaction to a file, and the dump is read back:
every recipient got exactly one message, the message meant for it (its own To, first name and
Message-ID), with dot-stuffed lines intact, and the journal agrees with the returned frame.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pandas as pd
import pytest
from conftest import require_component

import smtpkit
from smtpkit import SMTPConfig, Template

ROWS = 3_000
SINKS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
HOW_TO_GET = "apt-get install postfix (with a policy-rc.d that keeps its service stopped)"

TEMPLATE = Template(
    sender="News <news@shop.example>",
    subject="Hello {first_name}",
    text=(
        "Hi {first_name},\n"
        ".a line that starts with a dot must arrive as written\n"
        "..and two dots stay two dots\n"
        "your code is {code}.\n"
    ),
)


def _sink_path() -> str | None:
    found = [path for path in SINKS if os.path.exists(path)]
    return found[0] if found else shutil.which("smtp-sink")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _smtp_sink(dump: Path) -> Iterator[int]:
    """smtp-sink on 127.0.0.1, appending every transaction to ``dump``; stopped by PID."""
    sink = _sink_path()
    require_component("smtp-sink", sink is not None, HOW_TO_GET)
    assert sink is not None
    port = _free_port()
    args = [sink, "-D", str(dump)]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]  # smtp-sink refuses to run as root
    proc = subprocess.Popen([*args, f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"smtp-sink did not start: {err}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _transactions(dump: Path) -> list[tuple[list[str], bytes]]:
    """(envelope recipients, message) of every transaction in an smtp-sink dump file."""
    found: list[tuple[list[str], bytes]] = []
    for chunk in dump.read_bytes().split(b"X-Client-Addr: ")[1:]:
        head, _, message = chunk.partition(b"\nReceived: ")
        recipients = [line[len(b"X-Rcpt-Args: <"):-1].decode()
                      for line in head.split(b"\n") if line.startswith(b"X-Rcpt-Args: <")]
        # the dump ends every transaction with an empty line of its own
        found.append((recipients, b"Received: " + message.removesuffix(b"\n")))
    return found


@pytest.fixture
def dump_folder() -> Iterator[Path]:
    # smtp-sink drops to "nobody", which must be able to write here (pytest's tmp_path is 0700)
    folder = Path(tempfile.mkdtemp(prefix="smtpkit-sink-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_every_recipient_gets_its_own_message_once(dump_folder: Path, tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "email": [f"user{i}@d{i % 37}.example" for i in range(ROWS)],
        "first_name": [f"Name{i}" for i in range(ROWS)],
        "code": [f"C{i * 7919 % 100_003:06d}" for i in range(ROWS)],
    }, index=pd.RangeIndex(10, 10 + ROWS))
    dump = dump_folder / "dump"
    journal = tmp_path / "journal.db"
    with _smtp_sink(dump) as port:
        result = smtpkit.send(frame, TEMPLATE, SMTPConfig("127.0.0.1", port, tls="none"),
                              campaign="sink", journal=journal, concurrency=16, progress=False)
        deadline = time.monotonic() + 20  # the sink writes its dump as it answers; let it finish
        while (not dump.exists() or dump.read_bytes().count(b"X-Client-Addr: ") < ROWS) \
                and time.monotonic() < deadline:
            time.sleep(0.05)

    assert result.index.equals(frame.index)
    assert result["status"].value_counts().to_dict() == {"sent": ROWS}
    transactions = _transactions(dump)
    per_recipient = collections.Counter(r for recipients, _ in transactions for r in recipients)
    assert per_recipient == collections.Counter(frame["email"])  # each once, none missing
    assert all(len(recipients) == 1 for recipients, _ in transactions)

    by_email = frame.set_index("email")
    message_ids = dict(zip(frame["email"], result["message_id"], strict=True))
    for (recipient,), raw in transactions:
        message = message_from_bytes(raw, policy=policy.default)
        row = by_email.loc[recipient]
        assert message["To"] == recipient
        assert message["Subject"] == f"Hello {row['first_name']}"
        assert message["Message-ID"] == message_ids[recipient]
        body = message.get_content()
        assert body.splitlines() == [
            f"Hi {row['first_name']},",
            ".a line that starts with a dot must arrive as written",
            "..and two dots stay two dots",
            f"your code is {row['code']}.",
        ]

    recorded = smtpkit.outcomes(journal, "sink")
    assert recorded["status"].tolist() == result["status"].tolist()
    assert recorded["message_id"].tolist() == result["message_id"].tolist()
