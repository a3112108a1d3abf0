"""Conformance with GNU Mailman's flufl.bounce corpus (../shared/corpora/flufl-bounce).

For every message, the set of bounced addresses must equal the expected set, split into
permanent (``kind="bounce"``) and temporary (``kind="delay"``). Addresses compare with the
domain case-insensitive (upstream lists them verbatim). The parser has no knowledge of the
corpus: no file name or address appears in smtpkit. Target: >= 95% of messages exact, and no
exception for any message (including the two without an upstream expectation).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import corpus

from smtpkit.bounces import parse_bounce

TARGET = 0.95


def _normal(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def _score(folder: Path) -> tuple[int, int, list[str]]:
    exact, total, misses = 0, 0, []
    for line in (folder / "expected-by-file.jsonl").read_text("utf-8").splitlines():
        row = json.loads(line)
        records = parse_bounce((folder / row["file"]).read_bytes())  # must not raise
        assert records, f"{row['file']}: no record at all"
        if row["permanent"] is None:
            continue
        total += 1
        permanent = {_normal(r.recipient) for r in records if r.recipient and r.kind == "bounce"}
        temporary = {_normal(r.recipient) for r in records if r.recipient and r.kind == "delay"}
        want_permanent = {_normal(a) for a in row["permanent"]}
        want_temporary = {_normal(a) for a in row["temporary"]}
        if (permanent, temporary) == (want_permanent, want_temporary):
            exact += 1
        else:
            misses.append(
                f"{row['file']}: expected {sorted(want_permanent)} / {sorted(want_temporary)}, "
                f"got {sorted(permanent)} / {sorted(temporary)}"
            )
    return exact, total, misses


def test_flufl_bounce_corpus_score(capsys: pytest.CaptureFixture[str]) -> None:
    folder = corpus("flufl-bounce")
    exact, total, misses = _score(folder)
    score = exact / total
    with capsys.disabled():
        print(f"\nflufl-bounce conformance: {exact}/{total} messages exact ({score:.1%})")
        for miss in misses:
            print(f"  miss: {miss}")
    assert total > 90, "the corpus should have about a hundred messages with expectations"
    assert score >= TARGET, f"score {score:.1%} is below {TARGET:.0%}: " + "; ".join(misses)


def test_every_corpus_message_parses_without_exception() -> None:
    folder = corpus("flufl-bounce")
    files = sorted((folder / "data").glob("*.txt"))
    assert len(files) >= 100
    for path in files:
        records = parse_bounce(path.read_bytes())
        assert records and all(r.kind != "unparsed" for r in records), path.name
