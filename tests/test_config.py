"""config.py: SMTPConfig defaults and validation, from_env, password sources, and the secret-leak
checks this layer can make (repr, str, HTML repr, format, exceptions, pickle, copies, logging)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from smtpkit.config import (
    DEFAULT_PORTS,
    DEFAULT_TIMEOUT,
    MXDelivery,
    Secret,
    SMTPConfig,
    is_loopback,
)
from smtpkit.errors import ConfigError, SmtpkitError

PASSWORD = "hunter2-Sup3r$ecret"


# --- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "port", "tls"),
    [
        pytest.param({}, 587, "starttls", id="starttls-default"),
        pytest.param({"tls": "implicit"}, 465, "implicit", id="implicit-465"),
        pytest.param(
            {"tls": "starttls", "port": 2525}, 2525, "starttls", id="starttls-custom-port"
        ),
        pytest.param(
            {"tls": "implicit", "port": 2465}, 2465, "implicit", id="implicit-custom-port"
        ),
    ],
)
def test_defaults_per_tls_mode(options: dict[str, Any], port: int, tls: str) -> None:
    config = SMTPConfig("smtp.example.com", **options)
    assert (config.port, config.tls, config.timeout) == (port, tls, DEFAULT_TIMEOUT)
    assert (config.username, config.password, config.ca_file, config.insecure) == (
        None,
        None,
        None,
        False,
    )
    assert config.server == f"smtp.example.com:{port}"


def test_plaintext_default_port_and_server_names() -> None:
    assert SMTPConfig("127.0.0.1", tls="none").port == DEFAULT_PORTS["none"] == 25
    assert SMTPConfig("::1", 2525, tls="none").server == "[::1]:2525"


def test_config_is_frozen_and_replace_validates_again() -> None:
    config = SMTPConfig("smtp.example.com", username="ann", password=PASSWORD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 25  # type: ignore[misc]
    moved = config.replace(port=2587)
    assert (moved.port, moved.username, moved.password) == (2587, "ann", config.password)
    with pytest.raises(ConfigError, match=r"^AUTH is never sent over an unencrypted connection"):
        config.replace(host="127.0.0.1", tls="none", port=None)


# --- validation ---------------------------------------------------------------------------------


HOST = ("smtp.example.com",)
AUTH = {"username": "ann", "password": PASSWORD}
NO_HOST = "SMTPConfig needs a host name or address, such as 'smtp.example.com'."
BAD_HOST = "The SMTP host {} contains characters a host cannot have."
BAD_PORT = "port must be an integer from 1 to 65535; got {}."
BAD_TIMEOUT = "timeout must be a positive number of seconds; got {}."
HALF_AUTH = "Give both username and password for AUTH, or neither to send without logging in."
BAD_USER = "username must be a non-empty string without line breaks or control characters."
NO_PLAIN_AUTH = (
    "AUTH is never sent over an unencrypted connection; use tls='starttls' or tls='implicit' "
    "with a username and password."
)


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        pytest.param(("",), {}, NO_HOST, id="empty-host"),
        pytest.param(("  ",), {}, NO_HOST, id="blank-host"),
        pytest.param(
            ("smtp.example.com\r\nRSET",),
            {},
            BAD_HOST.format("'smtp.example.com\\r\\nRSET'"),
            id="host-crlf",
        ),
        pytest.param(
            ("smtp.example.com/x",), {}, BAD_HOST.format("'smtp.example.com/x'"), id="host-slash"
        ),
        pytest.param(
            ("smtp.example.com\t",), {}, BAD_HOST.format("'smtp.example.com\\t'"), id="host-tab"
        ),
        pytest.param(
            HOST,
            {"tls": "ssl"},
            "tls must be one of starttls, implicit, none; got 'ssl'.",
            id="tls-unknown",
        ),
        pytest.param((*HOST, 0), {}, BAD_PORT.format("0"), id="port-zero"),
        pytest.param((*HOST, 70000), {}, BAD_PORT.format("70000"), id="port-too-big"),
        pytest.param((*HOST, "587"), {}, BAD_PORT.format("'587'"), id="port-string"),
        pytest.param((*HOST, True), {}, BAD_PORT.format("True"), id="port-bool"),
        pytest.param(HOST, {"timeout": 0}, BAD_TIMEOUT.format("0"), id="timeout-zero"),
        pytest.param(HOST, {"timeout": True}, BAD_TIMEOUT.format("True"), id="timeout-bool"),
        pytest.param(HOST, {"username": "ann"}, HALF_AUTH, id="username-alone"),
        pytest.param(HOST, {"password": PASSWORD}, HALF_AUTH, id="password-alone"),
        pytest.param(
            HOST, AUTH | {"username": "ann\r\nMAIL FROM:<x@y.z>"}, BAD_USER, id="username-crlf"
        ),
        pytest.param(HOST, AUTH | {"username": 7}, BAD_USER, id="username-not-str"),
        pytest.param(
            HOST,
            {"local_hostname": "me\r\nRSET"},
            "local_hostname 'me\\r\\nRSET' must be a host name such as 'mail.example.com', without "
            "spaces or control characters (it is sent in EHLO).",
            id="local-hostname-crlf",
        ),
        pytest.param(
            HOST,
            AUTH | {"password": 12345},
            "A password must be a string or a callable returning one, not int.",
            id="password-int",
        ),
        pytest.param(
            HOST,
            {"ca_file": "/nonexistent/ca.pem"},
            "ca_file '/nonexistent/ca.pem' does not exist or is not a file.",
            id="ca-file-missing",
        ),
        pytest.param(
            (*HOST, 587),
            {"tls": "implicit"},
            "Port 587 expects STARTTLS, not implicit TLS; use tls='starttls' or port 465.",
            id="implicit-on-587",
        ),
        pytest.param(
            (*HOST, 465),
            {"tls": "starttls"},
            "Port 465 expects implicit TLS; use tls='implicit' (or another port for STARTTLS).",
            id="starttls-on-465",
        ),
        pytest.param(
            HOST,
            {"tls": "none"},
            "tls='none' would send mail in clear text to smtp.example.com; use tls='starttls' or "
            "tls='implicit', or pass insecure=True if you really mean it (plaintext is allowed "
            "without it only to 127.0.0.1 / ::1 / localhost).",
            id="plaintext-to-remote",
        ),
        pytest.param(
            ("10.0.0.5",),
            {"tls": "none"},
            "tls='none' would send mail in clear text to 10.0.0.5;",
            id="plaintext-to-private-address",
        ),
        pytest.param(
            ("127.0.0.1",), {"tls": "none"} | AUTH, NO_PLAIN_AUTH, id="auth-without-tls-loopback"
        ),
        pytest.param(
            HOST,
            {"tls": "none", "insecure": True} | AUTH,
            NO_PLAIN_AUTH,
            id="auth-without-tls-even-insecure",
        ),
    ],
)
def test_conflicting_or_bad_options_raise(
    args: tuple[Any, ...], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SMTPConfig(*args, **options)  # type: ignore[misc]
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, SmtpkitError)
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)


@pytest.mark.parametrize(
    ("host", "options"),
    [
        pytest.param("127.0.0.1", {}, id="ipv4-loopback"),
        pytest.param("127.8.9.10", {}, id="ipv4-loopback-range"),
        pytest.param("::1", {}, id="ipv6-loopback"),
        pytest.param("localhost", {}, id="localhost"),
        pytest.param("smtp.example.com", {"insecure": True}, id="remote-with-insecure"),
    ],
)
def test_plaintext_is_allowed_to_loopback_or_with_insecure(
    host: str, options: dict[str, Any]
) -> None:
    config = SMTPConfig(host, 2525, tls="none", **options)
    assert (config.tls, config.insecure) == ("none", options.get("insecure", False))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("localhost", True, id="localhost"),
        pytest.param("LOCALHOST.", True, id="localhost-upper-dot"),
        pytest.param("127.0.0.1", True, id="127.0.0.1"),
        pytest.param("127.255.0.1", True, id="127/8"),
        pytest.param("::1", True, id="::1"),
        pytest.param("[::1]", True, id="[::1]"),
        pytest.param("0:0:0:0:0:0:0:1", True, id="::1-long"),
        pytest.param("10.0.0.1", False, id="private"),
        pytest.param("0.0.0.0", False, id="any"),
        pytest.param("localhost.example.com", False, id="localhost-subdomain"),
        pytest.param("127.0.0.1.example.com", False, id="lookalike"),
        pytest.param("smtp.example.com", False, id="remote"),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_ca_file_and_local_hostname(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = SMTPConfig("smtp.example.com", ca_file=str(ca), local_hostname="mail.acme.example")
    assert (config.ca_file, config.local_hostname) == (str(ca), "mail.acme.example")
    assert repr(config) == (
        f"SMTPConfig(host='smtp.example.com', port=587, tls='starttls', ca_file={str(ca)!r}, "
        "local_hostname='mail.acme.example')"
    )


# --- from_env -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"SMTP_HOST": "smtp.example.com"},
            {"host": "smtp.example.com", "port": 587, "tls": "starttls", "username": None},
            id="host-only",
        ),
        pytest.param(
            {
                "SMTP_HOST": "smtp.example.com",
                "SMTP_PORT": "465",
                "SMTP_TLS": "IMPLICIT",
                "SMTP_USERNAME": "ann",
                "SMTP_PASSWORD": PASSWORD,
                "SMTP_TIMEOUT": "12.5",
            },
            {"port": 465, "tls": "implicit", "username": "ann", "timeout": 12.5},
            id="everything",
        ),
        pytest.param(
            {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_TLS": "none",
                "SMTP_PORT": "2525",
                "SMTP_PASSWORD": "",
            },
            {"port": 2525, "tls": "none", "password": None},
            id="empty-values-are-unset",
        ),
        pytest.param(
            {"SMTP_HOST": "relay.example.com", "SMTP_TLS": "none", "SMTP_INSECURE": "yes"},
            {"tls": "none", "insecure": True},
            id="insecure-yes",
        ),
        pytest.param(
            {"SMTP_HOST": "smtp.example.com", "SMTP_LOCAL_HOSTNAME": "mail.acme.example"},
            {"local_hostname": "mail.acme.example"},
            id="local-hostname",
        ),
    ],
)
def test_from_env(environ: dict[str, str], expected: dict[str, Any]) -> None:
    config = SMTPConfig.from_env(environ=environ)
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    if environ.get("SMTP_PASSWORD"):
        assert isinstance(config.password, Secret) and config.password.reveal() == PASSWORD


def test_from_env_prefix_and_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_HOST", "smtp.example.com")
    monkeypatch.setenv("MAILER_USERNAME", "ann")
    monkeypatch.setenv("MAILER_PASSWORD", PASSWORD)
    config = SMTPConfig.from_env("MAILER_")
    assert (config.host, config.username) == ("smtp.example.com", "ann")
    assert config.password is not None and config.password.reveal() == PASSWORD


ENV = {"SMTP_HOST": "h.example"}
NOT_NUMBERS = "SMTP_PORT and SMTP_TIMEOUT must be numbers."


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({}, "Set SMTP_HOST (and optionally SMTP_PORT, SMTP_TLS, ...).", id="no-host"),
        pytest.param(ENV | {"SMTP_PORT": "abc"}, NOT_NUMBERS, id="port-text"),
        pytest.param(ENV | {"SMTP_TIMEOUT": "soon"}, NOT_NUMBERS, id="timeout-text"),
        pytest.param(
            ENV | {"SMTP_TLS": "tls"},
            "tls must be one of starttls, implicit, none; got 'tls'.",
            id="tls-unknown",
        ),
        pytest.param(ENV | {"SMTP_PASSWORD": PASSWORD}, HALF_AUTH, id="password-without-user"),
        pytest.param(
            ENV
            | {
                "SMTP_TLS": "none",
                "SMTP_INSECURE": "1",
                "SMTP_USERNAME": "ann",
                "SMTP_PASSWORD": PASSWORD,
            },
            NO_PLAIN_AUTH,
            id="auth-plaintext",
        ),
    ],
)
def test_from_env_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SMTPConfig.from_env(environ=environ)
    assert str(caught.value).startswith(message)
    assert PASSWORD not in str(caught.value)


# --- password sources ---------------------------------------------------------------------------


def test_secret_from_keyring_without_keyring_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # "import keyring" now fails as if absent
    secret = Secret.from_keyring("smtp.example.com", "ann")  # nothing is asked yet
    config = SMTPConfig("smtp.example.com", username="ann", password=secret)
    with pytest.raises(ConfigError) as caught:
        config.password.reveal()  # type: ignore[union-attr]
    assert str(caught.value) == (
        "Reading the password from the OS keyring needs the 'keyring' package; install it with "
        "'pip install keyring'."
    )


def test_secret_from_keyring_reads_once_or_says_how_to_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No OS keyring daemon can run here; a stand-in module answers like keyring.get_password.
    store = {("smtp.example.com", "ann"): PASSWORD}
    calls: list[tuple[str, str]] = []

    def get_password(service: str, username: str) -> str | None:
        calls.append((service, username))
        return store.get((service, username))

    monkeypatch.setitem(sys.modules, "keyring", types.SimpleNamespace(get_password=get_password))
    secret = Secret.from_keyring("smtp.example.com", "ann")
    assert calls == []
    assert secret.reveal() == PASSWORD and secret.reveal() == PASSWORD
    assert calls == [("smtp.example.com", "ann")]
    assert PASSWORD not in repr(secret)
    with pytest.raises(ConfigError) as caught:
        Secret.from_keyring("smtp.example.com", "bob").reveal()
    assert str(caught.value) == (
        "The OS keyring has no password for service 'smtp.example.com' and user 'bob'; store one "
        "with 'keyring set smtp.example.com bob'."
    )


def test_secret_prompt_asks_getpass_once_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ") -> str:  # a terminal prompt cannot run in tests
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    config = SMTPConfig("smtp.example.com", username="ann", password=Secret.prompt())
    assert prompts == []
    assert config.password is not None
    assert config.password.reveal() == PASSWORD and config.password.reveal() == PASSWORD
    assert prompts == ["SMTP password: "]
    assert Secret.prompt("Password for ann: ").reveal() == PASSWORD
    assert prompts[-1] == "Password for ann: "


def test_secret_source_must_give_a_string() -> None:
    with pytest.raises(ConfigError, match=r"^The password source did not return a string\.$"):
        Secret(lambda: 42).reveal()  # type: ignore[arg-type,return-value]


def test_secrets_compare_by_value_and_wrap_once() -> None:
    assert Secret(PASSWORD) == Secret(lambda: PASSWORD)
    assert Secret(PASSWORD) != Secret("other")
    assert Secret(Secret(PASSWORD)).reveal() == PASSWORD
    assert hash(Secret("a")) == hash(Secret("b"))  # the hash says nothing about the value


# --- the password never shows -------------------------------------------------------------------


def _configs() -> list[SMTPConfig]:
    environ = {"SMTP_HOST": "smtp.example.com", "SMTP_USERNAME": "ann", "SMTP_PASSWORD": PASSWORD}
    return [
        SMTPConfig("smtp.example.com", username="ann", password=PASSWORD),
        SMTPConfig(
            "smtp.example.com", 465, tls="implicit", username="ann", password=Secret(PASSWORD)
        ),
        SMTPConfig("smtp.example.com", username="ann", password=lambda: PASSWORD),
        SMTPConfig.from_env(environ=environ),
    ]


@pytest.mark.parametrize(
    "show",
    [
        pytest.param(repr, id="repr"),
        pytest.param(str, id="str"),
        pytest.param(lambda c: c._repr_html_(), id="repr-html"),
        pytest.param(lambda c: f"{c} {c!r} {c!s} {c:}", id="f-string"),
        pytest.param(lambda c: format(c), id="format"),
        pytest.param(lambda c: "%s %r" % (c, c), id="percent"),  # noqa: UP031
        pytest.param(
            lambda c: f"{c.password} {c.password!r} {c.password:>20}", id="password-field"
        ),
        pytest.param(lambda c: "{0.password} {0}".format(c), id="str-format"),  # noqa: UP032
        pytest.param(lambda c: repr(vars(c)), id="vars"),
        pytest.param(lambda c: repr(dataclasses.asdict(c)), id="asdict"),
        pytest.param(lambda c: repr(copy.deepcopy(c)) + repr(copy.copy(c)), id="copies"),
        pytest.param(lambda c: repr(c.replace(port=2525)), id="replace"),
        pytest.param(lambda c: repr([c, {"config": c}]), id="containers"),
    ],
)
def test_the_password_never_appears(show: Any) -> None:
    for config in _configs():
        text = show(config)
        assert PASSWORD not in text
        assert "********" in text or "password" not in text


def test_pickling_is_refused_without_showing_the_password() -> None:
    for config in _configs():
        with pytest.raises(TypeError) as caught:
            pickle.dumps(config)
        assert (
            str(caught.value)
            == "A Secret cannot be pickled; pass the configuration, not its password."
        )
        assert PASSWORD not in repr(caught.value)
    assert pickle.loads(pickle.dumps(SMTPConfig("smtp.example.com"))) == SMTPConfig(
        "smtp.example.com"
    )


def test_logging_a_config_does_not_log_the_password(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("smtpkit.test_config")
    with caplog.at_level(logging.DEBUG, logger="smtpkit.test_config"):
        for config in _configs():
            logger.info("connecting with %s", config)
            logger.info("config=%r password=%s", config, config.password)
            logger.info("as dict: %s", dataclasses.asdict(config))
            try:
                SMTPConfig(config.host, tls="none", username="ann", password=config.password)
            except ConfigError:
                logger.exception("bad config")
    assert len(caplog.records) == 16
    text = caplog.text + "".join(record.getMessage() for record in caplog.records)
    assert "connecting with SMTPConfig(host='smtp.example.com'" in text
    assert PASSWORD not in text


def test_exceptions_from_validation_do_not_show_the_password() -> None:
    problems = [
        {"tls": "none", "host": "smtp.example.com"},
        {"tls": "none", "host": "127.0.0.1"},
        {"port": -1},
        {"timeout": -5},
        {"tls": "starttls", "port": 465},
        {"ca_file": "/nonexistent.pem"},
    ]
    for change in problems:
        options = {"host": "smtp.example.com", "username": "ann", "password": PASSWORD} | change
        with pytest.raises(ConfigError) as caught:
            SMTPConfig(**options)
        assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value.args)


# --- MXDelivery -------------------------------------------------------------------------------


def test_mx_delivery() -> None:
    mx = MXDelivery(port=2525, tls="none", insecure=True, local_hostname="mail.acme.example")
    config = mx.config_for("203.0.113.9")
    assert (config.host, config.port, config.tls, config.local_hostname) == (
        "203.0.113.9",
        2525,
        "none",
        "mail.acme.example",
    )
    assert repr(mx) == "MXDelivery(port=2525, tls='none')"
    assert MXDelivery().port == 25 and MXDelivery().tls == "starttls"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"tls": "implicit"}, "MXDelivery tls must be 'starttls' or 'none'.", id="implicit"
        ),
        pytest.param({"port": 0}, BAD_PORT.format("0"), id="port-zero"),
        pytest.param(
            {"tls": "none"},
            "MXDelivery(tls='none') would deliver in clear text to every recipient's mail "
            "server; use tls='starttls', or pass insecure=True if you really mean it.",
            id="plaintext-without-insecure",
        ),
        pytest.param(
            {"ca_file": "/nonexistent.pem"},
            "ca_file '/nonexistent.pem' does not exist or is not a file.",
            id="ca-file",
        ),
    ],
)
def test_mx_delivery_refuses(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MXDelivery(**options)
    assert str(caught.value) == message
