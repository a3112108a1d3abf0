"""``smtpkit clean IN -o OUT``: the command line over load_contacts + clean + clean_report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smtpkit.cli import main

ZONE_FILE = Path(__file__).parent / "data" / "dns_answers.json"


@pytest.fixture
def contacts(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id;E-Mail\n1;Ann <ann@example.com>\n2;ANN@example.com\n3;bob@nullmx.example\n"
        "4;not an address\n5;\n6;cy@example.com\n",
        encoding="utf-8",
    )
    return path


def test_clean_writes_csv_and_prints_the_report(
    contacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cleaned.csv"
    assert main(["clean", str(contacts), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rows: 6, valid: 4, sendable: 3, duplicates: 1" in printed
    assert "duplicate" in printed and "16.7%" in printed
    assert f"wrote {out} (6 rows, 3 sendable)" in printed
    cleaned = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert cleaned["source_row"].tolist() == ["1", "2", "3", "4", "5", "6"]
    assert cleaned["reason"].tolist() == ["ok", "duplicate", "ok", "no_at_sign", "blank", "ok"]


def test_clean_check_mx_from_recorded_answers_and_suppress(
    contacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suppress = tmp_path / "suppress.txt"
    suppress.write_text("cy@example.com\n", encoding="utf-8")
    out = tmp_path / "cleaned.parquet"
    argv = ["clean", str(contacts), "-o", str(out), "--check-mx", "--dns-zone", str(ZONE_FILE),
            "--suppress", str(suppress), "--column", "E-Mail"]
    assert main(argv) == 0
    cleaned = pd.read_parquet(out)
    assert cleaned["reason"].tolist() == [
        "ok", "duplicate", "null_mx", "no_at_sign", "blank", "suppressed"
    ]
    assert cleaned["mx_ok"].tolist()[:3] == [True, True, False]
    assert "sendable: 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["clean", "/nonexistent/list.csv"], "does not exist; check the path",
                     id="missing-file"),
        pytest.param(["clean", "{contacts}", "--column", "mail"],
                     "has no column 'mail'; its columns are 'id', 'E-Mail'", id="missing-column"),
        pytest.param(["clean", "{contacts}", "--dns-zone", "zone.json"],
                     "--dns-zone only makes sense with --check-mx", id="zone-without-check-mx"),
    ],
)
def test_clean_mistakes_exit_1_with_a_sentence(
    argv: list[str], message: str, contacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(contacts=contacts) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_console_script_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpkit.cli", "clean", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "smtpkit clean data/contacts.csv -o cleaned.csv" in done.stdout
    assert "--check-mx" in done.stdout
