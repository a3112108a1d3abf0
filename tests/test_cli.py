"""The smtpkit command: verify from the environment, send reads lists as text, help texts."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smtpkit.cli import main
from smtpkit.sandbox import Sandbox


@pytest.fixture(scope="module")
def auth_box():
    with Sandbox(auth=True) as box:
        yield box


def _env(box: Sandbox, **extra: str) -> dict[str, str]:
    return {"SMTP_HOST": box.host, "SMTP_PORT": str(box.port), "SMTP_TLS": "starttls",
            "SMTP_CA_FILE": str(box.ca_file), **extra}


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_")}
    return subprocess.run([sys.executable, "-m", "smtpkit.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env={**clean_env, **env}, timeout=120, check=False)


def test_verify_ready(auth_box: Sandbox, tmp_path: Path) -> None:
    password = auth_box.password.reveal()
    done = _run(["verify", "--send-test-to", "ops@example.com", "--sender", "me@example.com"],
                _env(auth_box, SMTP_USERNAME=str(auth_box.username), SMTP_PASSWORD=password),
                tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ready to send" in done.stdout
    assert "OK       test_message" in done.stdout
    assert password not in done.stdout + done.stderr
    assert (auth_box.deliveries()["recipient"] == "ops@example.com").any()


def test_verify_wrong_password_exits_1_without_showing_it(auth_box: Sandbox,
                                                           tmp_path: Path) -> None:
    done = _run(["verify"], _env(auth_box, SMTP_USERNAME=str(auth_box.username),
                                 SMTP_PASSWORD="wrong-horse-battery"), tmp_path)
    assert done.returncode == 1
    assert "NOT ready" in done.stdout and "FAILED   auth" in done.stdout
    assert "wrong-horse-battery" not in done.stdout + done.stderr


def test_verify_asks_for_a_password_that_is_not_in_the_environment(
    auth_box: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The hidden terminal prompt is the one thing that cannot run here: answer it.
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return auth_box.password.reveal()

    monkeypatch.setattr("getpass.getpass", answer)
    for key in [k for k in os.environ if k.startswith("SMTP_")]:
        monkeypatch.delenv(key)
    for key, value in _env(auth_box, SMTP_USERNAME=str(auth_box.username)).items():
        monkeypatch.setenv(key, value)
    assert main(["verify"]) == 0
    assert asked == [f"SMTP password for {auth_box.username}: "]
    assert "ready to send" in capsys.readouterr().out


def test_verify_without_a_host_says_what_to_set(tmp_path: Path) -> None:
    done = _run(["verify"], {}, tmp_path)
    assert done.returncode == 1
    assert "Set SMTP_HOST" in done.stderr


def test_send_keeps_leading_zeros_and_na_cells(tmp_path: Path) -> None:
    # A cleaned list written by `smtpkit clean`: ids with leading zeros, a surname "NA".
    pd.DataFrame({
        "contact_id": ["00123", "00456"],
        "email": ["ann@example.com", "bob@example.com"],
        "last_name": ["NA", "Null"],
        "sendable": [True, False],
    }).to_csv(tmp_path / "cleaned.csv", index=False)
    (tmp_path / "t.toml").write_text(
        'subject = "Hi"\nsender = "news@shop.example"\ntext = "Dear {last_name}"\n'
        'unsubscribe = "https://shop.example/u?id={contact_id}"\n', encoding="utf-8")
    with Sandbox(tls=False) as box:
        env = {"SMTP_HOST": box.host, "SMTP_PORT": str(box.port), "SMTP_TLS": "none"}
        done = _run(["send", "cleaned.csv", "--template", "t.toml", "--campaign", "z",
                     "--no-progress"], env, tmp_path)
        raw = box.raw_messages()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("campaign 'z': sent 1, skipped 1 of 2 rows")
    assert len(raw) == 1  # sendable=False was read back as a boolean and honoured
    message = email.message_from_bytes(raw[0], policy=email.policy.default)
    assert message["List-Unsubscribe"] == "<https://shop.example/u?id=00123>"
    assert "Dear NA" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("command", ["demo", "sandbox", "clean", "verify", "send", "bounces",
                                     "report"])
def test_every_command_has_help_with_an_example(command: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "example:\n  " in capsys.readouterr().out
