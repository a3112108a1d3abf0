"""``smtpkit send`` on the command line, against the Sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import smtpkit
from smtpkit.sandbox import Sandbox, World

ROOT = Path(__file__).resolve().parent.parent


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpkit.cli", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **env}, timeout=120, check=False,
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    pd.DataFrame({
        "email": ["ann@example.com", "gone@example.com", "bob@example.com"],
        "first_name": ["Ann", "Gus", "Bob"],
        "sendable": [True, True, True],
    }).to_csv(tmp_path / "cleaned.csv", index=False)
    (tmp_path / "welcome.txt").write_text("Hello {first_name}, welcome!\n", encoding="utf-8")
    (tmp_path / "welcome.toml").write_text(
        'subject = "Hi {first_name}"\nsender = "Shop <news@shop.example>"\n'
        'text_file = "welcome.txt"\n', encoding="utf-8")
    return tmp_path


def test_send_from_the_command_line(files: Path) -> None:
    with Sandbox(World(addresses={"gone@example.com": "user_unknown"}), tls=False) as box:
        env = {"SMTP_HOST": box.host, "SMTP_PORT": str(box.port), "SMTP_TLS": "none"}
        args = ["send", "cleaned.csv", "--template", "welcome.toml", "--campaign", "cli",
                "--no-progress", "-o", "outcomes.csv"]
        dry = _cli([*args[:-2], "--dry-run"], env, files)
        assert dry.returncode == 0, dry.stderr
        assert box.deliveries().empty and not (files / "smtpkit.db").exists()
        done = _cli(args, env, files)
        again = _cli(args, env, files)
        assert len(box.deliveries()) == 2
    assert done.returncode == 3, done.stderr  # one row failed
    assert done.stdout.startswith("campaign 'cli': sent 2, failed 1 of 3 rows\n")
    assert dry.stdout.startswith("campaign 'cli' (dry run): skipped 3 of 3 rows\n")
    written = pd.read_csv(files / "outcomes.csv")
    assert written["status"].tolist() == ["sent", "failed", "sent"]
    assert again.returncode == 3 and again.stdout == done.stdout  # resumed: nothing new
    assert (smtpkit.outcomes(files / "smtpkit.db", "cli")["status"] == written["status"]).all()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param('subject = "Hi"\nsender = "a@b.example"\ntext = "x"\ncolour = "red"\n',
                     "error: welcome.toml: unknown template key(s) colour;", id="unknown-key"),
        pytest.param('subject = "Hi"\nsender = "a@b.example"\ntext_file = "nope.txt"\n',
                     "error: welcome.toml: text_file 'nope.txt' cannot be read:",
                     id="missing-text-file"),
        pytest.param('subject = "Hi\n', "error: The template file 'welcome.toml' cannot be read "
                     "as TOML:", id="bad-toml"),
    ],
)
def test_bad_template_files(files: Path, template: str, message: str) -> None:
    (files / "welcome.toml").write_text(template, encoding="utf-8")
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "1", "SMTP_TLS": "none"}
    result = _cli(["send", "cleaned.csv", "--template", "welcome.toml", "--campaign", "x"],
                  env, files)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
