"""verify() against real servers on loopback: the Sandbox with and without TLS/AUTH, a wrong
password, a wrong TLS mode, a stripped STARTTLS and a closed port."""

from __future__ import annotations

import socket

import pytest

from smtpkit import InputError, Sandbox, SMTPConfig, verify
from smtpkit.verify import VerifyReport


@pytest.fixture(scope="module")
def auth_box():
    with Sandbox(auth=True) as box:
        yield box


@pytest.fixture(scope="module")
def plain_box():
    with Sandbox(tls=False) as box:
        yield box


def _states(report: VerifyReport) -> dict[str, str]:
    return {s.name: s.state for s in report.steps}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tls_and_auth_all_ok(auth_box) -> None:
    report = verify(auth_box.config)
    assert report.ok, str(report)
    assert _states(report) == {
        "connect": "ok",
        "tls": "ok",
        "ehlo": "ok",
        "auth": "ok",
        "test_message": "skipped",
    }
    tls = report.step("tls").detail
    assert "TLSv1." in tls and "valid until" in tls
    ehlo = report.step("ehlo").detail
    assert "PIPELINING" in ehlo and "SMTPUTF8" in ehlo and "AUTH" in ehlo and "PLAIN" in ehlo
    assert report.info is not None and report.info.logged_in is True
    assert report.step("connect").ms is not None


def test_test_message_is_delivered_once(auth_box) -> None:
    before = len(auth_box.deliveries())
    report = verify(auth_box.config, send_test_to="ops@example.com", sender="news@example.com")
    assert report.step("test_message").state == "ok", str(report)
    deliveries = auth_box.deliveries()
    assert len(deliveries) == before + 1
    last = deliveries.iloc[-1]
    assert last["recipient"] == "ops@example.com"
    assert last["envelope_sender"] == "news@example.com"
    assert bool(last["tls"]) is True


def test_plaintext_to_loopback_without_auth(plain_box) -> None:
    report = verify(plain_box.config)
    assert report.ok, str(report)
    assert _states(report)["tls"] == "skipped"
    assert _states(report)["auth"] == "skipped"


def test_wrong_password_fails_the_auth_step_and_sends_nothing(auth_box) -> None:
    before = len(auth_box.deliveries())
    config = auth_box.config.replace(password="not-the-password")
    report = verify(config, send_test_to="ops@example.com")
    states = _states(report)
    assert states["connect"] == states["tls"] == states["ehlo"] == "ok"
    assert states["auth"] == "failed"
    assert states["test_message"] == "skipped"
    assert not report.ok
    assert "password" in report.step("auth").fix
    assert len(auth_box.deliveries()) == before
    shown = str(report) + report._repr_html_() + report.to_frame().to_string()
    assert "not-the-password" not in shown
    assert auth_box.password.reveal() not in shown


def test_starttls_stripped_is_an_error_not_a_fallback(plain_box) -> None:
    # The server does not offer STARTTLS: a config asking for it must stop, not go plaintext.
    config = SMTPConfig(plain_box.host, plain_box.port, tls="starttls")
    report = verify(config)
    states = _states(report)
    assert states["connect"] == "ok"
    assert states["tls"] == "failed"
    assert "clear text" in report.step("tls").fix
    assert states["auth"] == "skipped"


def test_implicit_tls_against_a_starttls_server(auth_box) -> None:
    config = SMTPConfig(auth_box.host, auth_box.port, tls="implicit", ca_file=auth_box.ca_file,
                        timeout=5)
    report = verify(config)
    assert not report.ok
    assert report.step("tls").state == "failed" or report.step("connect").state == "failed"
    fixes = " ".join(s.fix for s in report.steps)
    assert "tls='starttls'" in fixes


def test_untrusted_certificate_fails_tls(auth_box) -> None:
    # Without the sandbox's CA file the system store does not trust its certificate.
    config = SMTPConfig(auth_box.host, auth_box.port, tls="starttls", timeout=5)
    report = verify(config)
    assert report.step("tls").state == "failed"
    assert "ca_file" in report.step("tls").fix


def test_closed_port() -> None:
    port = _closed_port()
    report = verify(SMTPConfig("127.0.0.1", port, tls="none", timeout=5))
    assert _states(report) == {
        "connect": "failed",
        "tls": "skipped",
        "ehlo": "skipped",
        "auth": "skipped",
        "test_message": "skipped",
    }
    assert f"127.0.0.1:{port}" in report.step("connect").fix


def test_report_renders_in_a_notebook(auth_box) -> None:
    report = verify(auth_box.config)
    page = report._repr_html_()
    assert page.startswith("<table>") and "ready to send" in page
    frame = report.to_frame()
    assert list(frame.columns) == ["step", "state", "detail", "fix", "ms"]
    assert len(frame) == 5


@pytest.mark.parametrize("option", ["send_test_to", "sender"])
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("not-an-address", id="no-at-sign"),
        pytest.param("a@b.com\r\nRCPT TO:<x@y.z>", id="injection"),
        pytest.param("a@b.com\x85x", id="next-line"),
        pytest.param("a@b.com, c@d.com", id="two-addresses"),
        pytest.param(5, id="not-text"),
    ],
)
def test_bad_address_is_refused_before_connecting(option: str, bad: object) -> None:
    with pytest.raises(InputError, match=f"{option} must be one email address"):
        verify(SMTPConfig("127.0.0.1", _closed_port(), tls="none"),  # type: ignore[arg-type]
               **{option: bad})


def test_mx_delivery_is_refused_with_advice() -> None:
    from smtpkit import MXDelivery

    with pytest.raises(InputError, match="verify the config of one MX host"):
        verify(MXDelivery())  # type: ignore[arg-type]


def test_asking_for_a_step_the_report_lacks_names_the_steps() -> None:
    from smtpkit.errors import InputError
    from smtpkit.verify import VerifyReport, VerifyStep

    report = VerifyReport(server="127.0.0.1:25", tls_mode="none",
                          steps=(VerifyStep("connect", "ok", "connected"),))
    with pytest.raises(InputError, match=r"no step 'auth'; its steps are 'connect'"):
        report.step("auth")
