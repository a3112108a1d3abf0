"""transport.py: reply translation (table tests) and real sessions against servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiosmtplib
import pytest
from aiosmtplib import SMTPResponse
from test_send_servers import (
    RawServer,
    ScriptedHandler,
    SMTPServer,
    TLSFiles,
    greeting_only,
    make_tls,
    message,
    silent,
)

from smtpkit.config import SMTPConfig
from smtpkit.errors import SmtpkitError
from smtpkit.transport import (
    REASONS,
    Envelope,
    SMTPConnection,
    SMTPReply,
    TransportError,
    translate,
)

# --------------------------------------------------------------------------------------------
# translate(): one row per situation


def _gaierror() -> Exception:
    exc = aiosmtplib.SMTPConnectError("Error connecting to nowhere.invalid on port 25")
    exc.__cause__ = socket.gaierror(-2, "Name or service not known")
    return exc


def _cert_error() -> Exception:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


@pytest.mark.parametrize(
    ("reply", "stage", "expected"),
    [
        pytest.param(SMTPResponse(250, "2.0.0 Ok: queued as 4F2"), "message",
                     (250, "2.0.0", "ok", "accepted"), id="accepted"),
        pytest.param(SMTPResponse(550, "5.1.1 <x@example.com>: Recipient address rejected"),
                     "rcpt", (550, "5.1.1", "permanent", "user_unknown"), id="user-unknown"),
        pytest.param(SMTPResponse(550, "No such user here"), "rcpt",
                     (550, None, "permanent", "user_unknown"), id="user-unknown-no-enhanced"),
        pytest.param(SMTPResponse(451, "4.7.1 Greylisted, please try again later"), "rcpt",
                     (451, "4.7.1", "transient", "greylisted"), id="greylisted"),
        pytest.param(SMTPResponse(450, "4.2.0 <x@example.com>: Recipient address rejected: "
                                  "Greylisted"), "rcpt",
                     (450, "4.2.0", "transient", "greylisted"), id="greylisted-postgrey"),
        pytest.param(SMTPResponse(421, "4.7.0 Too many messages, slow down"), "mail",
                     (421, "4.7.0", "transient", "throttled"), id="throttled-421"),
        pytest.param(SMTPResponse(421, "4.7.0 Too many messages to yahoo.com on one connection; "
                                  "closing, try again later"), "rcpt",
                     (421, "4.7.0", "transient", "connection_closed"),
                     id="421-messages-per-connection"),
        pytest.param(SMTPResponse(421, "4.3.2 Service shutting down, closing transmission "
                                  "channel"), "mail",
                     (421, "4.3.2", "transient", "connection_closed"), id="421-shutting-down"),
        pytest.param(SMTPResponse(421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily "
                                  "deferred due to unexpected volume"), "mail",
                     (421, "4.7.0", "transient", "throttled"), id="421-volume"),
        pytest.param(SMTPResponse(421, "4.3.2 The maximum number of concurrent server "
                                  "connections has exceeded a limit"), "rcpt",
                     (421, "4.3.2", "transient", "throttled"), id="421-concurrent-connections"),
        pytest.param(SMTPResponse(421, "4.7.28 Our system has detected an unusual rate of "
                                  "unsolicited mail"), "rcpt",
                     (421, "4.7.28", "transient", "throttled"), id="421-rate"),
        pytest.param(SMTPResponse(421, "4.4.2 mx.example.com Error: timeout exceeded"), "data",
                     (421, "4.4.2", "transient", "connection_closed"), id="421-timeout"),
        pytest.param(SMTPResponse(451, "4.7.0 Rate limit exceeded"), "rcpt",
                     (451, "4.7.0", "transient", "throttled"), id="throttled-451-47x"),
        pytest.param(SMTPResponse(452, "4.5.3 Too many recipients"), "rcpt",
                     (452, "4.5.3", "transient", "throttled"), id="throttled-452"),
        pytest.param(SMTPResponse(454, "4.7.1 Try again later"), "rcpt",
                     (454, "4.7.1", "transient", "throttled"), id="throttled-454"),
        pytest.param(SMTPResponse(452, "4.2.2 Mailbox full"), "rcpt",
                     (452, "4.2.2", "transient", "mailbox_full"), id="mailbox-full-transient"),
        pytest.param(SMTPResponse(552, "5.2.2 Mailbox full"), "rcpt",
                     (552, "5.2.2", "permanent", "mailbox_full"), id="mailbox-full"),
        pytest.param(SMTPResponse(552, "5.3.4 Message size exceeds fixed limit"), "message",
                     (552, "5.3.4", "permanent", "message_too_large"), id="too-large"),
        pytest.param(SMTPResponse(554, "5.7.1 Message rejected as spam"), "message",
                     (554, "5.7.1", "permanent", "spam"), id="spam"),
        pytest.param(SMTPResponse(554, "5.7.1 Policy rejection"), "rcpt",
                     (554, "5.7.1", "permanent", "policy"), id="policy"),
        pytest.param(SMTPResponse(550, "5.7.1 Relaying denied"), "rcpt",
                     (550, "5.7.1", "permanent", "relay_denied"), id="relay-denied"),
        pytest.param(SMTPResponse(553, "5.1.8 Sender address rejected: Domain not found"), "mail",
                     (553, "5.1.8", "permanent", "sender_rejected"), id="sender-rejected"),
        pytest.param(SMTPResponse(550, "Sender not allowed"), "mail",
                     (550, None, "permanent", "sender_rejected"), id="sender-rejected-plain"),
        pytest.param(SMTPResponse(554, "mx.example.com no SMTP service here"), "greeting",
                     (554, None, "permanent", "service_refused"), id="greeting-554"),
        pytest.param(SMTPResponse(421, "Service not available"), "greeting",
                     (421, None, "transient", "service_unavailable"), id="greeting-421"),
        pytest.param(SMTPResponse(535, "5.7.8 Authentication credentials invalid"), "auth",
                     (535, "5.7.8", "permanent", "auth_failed"), id="auth-failed"),
        pytest.param(SMTPResponse(454, "4.7.0 Temporary authentication failure"), "auth",
                     (454, "4.7.0", "transient", "auth_temporary"), id="auth-temporary"),
        pytest.param(SMTPResponse(500, "Command unrecognized"), "rcpt",
                     (500, None, "permanent", "protocol_error"), id="protocol-error"),
        pytest.param((451, "4.3.0 Temporary local problem"), "data",
                     (451, "4.3.0", "transient", "temporary_failure"), id="code-message-pair"),
        pytest.param(SMTPResponse(550, "5.1.2 Host unknown"), "rcpt",
                     (550, "5.1.2", "permanent", "domain_not_found"), id="domain-not-found"),
        pytest.param(SMTPResponse(550, "5.1.1 Unbekannter Empf\udcc3nger"), "rcpt",
                     (550, "5.1.1", "permanent", "user_unknown"), id="not-utf8-text"),
    ],
)
def test_translate_replies(reply: object, stage: str, expected: tuple[object, ...]) -> None:
    got = translate(reply, stage=stage)
    assert (got.code, got.enhanced, got.kind, got.reason) == expected
    assert got.reason in REASONS
    assert got.stage == stage
    assert not (got.message[:1].isdigit() and got.enhanced)  # enhanced code split off
    got.message.encode("utf-8")  # always storable text (no lone surrogates)


@pytest.mark.parametrize(
    ("error", "stage", "expected"),
    [
        pytest.param(ConnectionRefusedError(111, "Connection refused"), "connect",
                     ("transient", "connection_refused"), id="refused"),
        pytest.param(aiosmtplib.SMTPServerDisconnected("Connection lost"), "rcpt",
                     ("transient", "connection_lost"), id="lost-before-data"),
        pytest.param(aiosmtplib.SMTPServerDisconnected("Connection lost"), "message",
                     ("unknown", "connection_lost_after_data"), id="lost-after-dot"),
        pytest.param(aiosmtplib.SMTPReadTimeoutError("Timed out"), "message",
                     ("unknown", "timeout_after_data"), id="timeout-after-dot"),
        pytest.param(TimeoutError(), "data", ("transient", "timeout"), id="timeout-before-data"),
        pytest.param(_cert_error(), "starttls", ("permanent", "tls_failed"), id="bad-cert"),
        pytest.param(_gaierror(), "connect", ("transient", "host_not_found"), id="no-such-host"),
        pytest.param(aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown", "a@x.com")]), "rcpt",
            ("permanent", "user_unknown"), id="all-recipients-refused"),
        pytest.param(aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"),
                     "mail", ("permanent", "smtputf8_required"), id="smtputf8"),
        pytest.param(aiosmtplib.SMTPConnectResponseError(554, "go away"), "connect",
                     ("permanent", "service_refused"), id="connect-response-554"),
    ],
)
def test_translate_errors(error: BaseException, stage: str, expected: tuple[str, str]) -> None:
    got = translate(error, stage=stage)
    assert (got.kind, got.reason) == expected
    assert got.reason in REASONS


def test_translate_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="takes an SMTP reply or an exception"):
        translate("250 ok", stage="mail")


@pytest.mark.parametrize(
    ("reply", "stops"),
    [
        pytest.param(translate(SMTPResponse(553, "5.1.8 bad sender"), stage="mail"), True,
                     id="sender-rejected-stops"),
        pytest.param(translate(SMTPResponse(554, "no"), stage="greeting"), True,
                     id="greeting-554-stops"),
        pytest.param(translate(SMTPResponse(535, "5.7.8 no"), stage="auth"), True,
                     id="auth-failed-stops"),
        pytest.param(translate(SMTPResponse(554, "5.7.1 policy"), stage="message"), False,
                     id="message-554-does-not-stop"),
        pytest.param(translate(SMTPResponse(550, "5.1.1 unknown"), stage="rcpt"), False,
                     id="user-unknown-does-not-stop"),
        pytest.param(translate(SMTPResponse(452, "4.2.2 full"), stage="mail"), False,
                     id="mail-4xx-does-not-stop"),
    ],
)
def test_campaign_stopping_replies(reply: SMTPReply, stops: bool) -> None:
    assert reply.stops_campaign is stops


# --------------------------------------------------------------------------------------------
# live sessions


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("pipelining", [False, True], ids=["sequential", "pipelined"])
async def test_many_messages_over_one_connection(pipelining: bool) -> None:
    handler = ScriptedHandler(pipelining=pipelining)
    body = "Hi.\r\n.starts with a dot\r\nbare LF\nend\r\n"
    with SMTPServer(handler) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            assert conn.info.pipelining is pipelining
            for i in range(5):
                rcpt = f"user{i}@example.com"
                replies = await conn.send("bounces+t@example.com", [rcpt], message(rcpt, body=body))
                assert replies[rcpt].ok, replies[rcpt]
                assert replies[rcpt].code == 250 and replies[rcpt].enhanced == "2.0.0"
            assert conn.usable and conn.messages == 5
    assert handler.connections == 1
    assert len(handler.deliveries) == 5
    delivered = handler.deliveries[0].content
    assert b"\r\n.starts with a dot\r\n" in delivered  # dot-quoting undone by the server
    assert b"bare LF\r\nend" in delivered  # line ending normalized
    assert handler.deliveries[0].mail_from == "bounces+t@example.com"


async def test_canonical_data_is_still_dot_quoted() -> None:
    # canonical=True (compose output: CRLF only) skips the search for bare line ends, never
    # the dot quoting: a line made of a single "." must not end the message early
    handler = ScriptedHandler(pipelining=True)
    body = "Hi.\r\n.\r\n.starts with a dot\r\nend\r\n"
    with SMTPServer(handler) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            replies = await conn.send("s@example.com", ["a@example.com"],
                                      message("a@example.com", body=body), canonical=True)
    assert replies["a@example.com"].ok
    delivered = handler.deliveries[0].content
    assert b"Hi.\r\n.\r\n.starts with a dot\r\nend" in delivered


@pytest.mark.parametrize(
    ("chunks", "expected", "left"),
    [
        pytest.param([b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n354 go ahead\r\n"],
                     [(250, "2.0.0 Ok"), (250, "2.1.0 Ok"), (354, "go ahead")], b"",
                     id="whole-replies-in-one-packet"),
        pytest.param([b"250-first\r\n250-sec", b"ond\r\n250 last\r\n354 g", b"o\r\n"],
                     [(250, "first\nsecond\nlast"), (354, "go")], b"", id="split-anywhere"),
        pytest.param([b"250-first\r\n", b"250 last\n", b"452 4.7.0 slow"],
                     [(250, "first\nlast")], b"452 4.7.0 slow", id="bare-lf-and-a-partial-reply"),
        pytest.param([b"250-one\r\n", b"250-two\r\n"], [], b"250-one\r\n250-two\n",
                     id="multi-line-reply-not-finished"),
        pytest.param([b"250\n354\r\n"], [(250, ""), (354, "")], b"", id="code-only"),
    ],
)
def test_replies_are_parsed_however_they_arrive(chunks: list[bytes],
                                                expected: list[tuple[int, str]],
                                                left: bytes) -> None:
    from smtpkit.transport import _Wire

    class Transport:
        def is_closing(self) -> bool:
            return False

    loop = asyncio.new_event_loop()
    try:
        wire = _Wire(Transport(), loop)  # type: ignore[arg-type]
        wire.expected = 10
        for chunk in chunks:
            wire.data_received(chunk)
        assert list(wire.replies) == expected
        assert bytes(wire.buffer).replace(b"\r", b"") == left.replace(b"\r", b"")
        assert wire.failure is None and not wire.broken
    finally:
        loop.close()


@pytest.mark.parametrize("pipelining", [False, True], ids=["sequential", "pipelined"])
async def test_partial_refusal_is_per_recipient(pipelining: bool) -> None:
    handler = ScriptedHandler(
        {"gone@example.com": "550 5.1.1 no such user", "full@example.com": "452 4.2.2 full"},
        pipelining=pipelining,
    )
    rcpts = ["ann@example.com", "gone@example.com", "full@example.com", "bob@example.com"]
    with SMTPServer(handler) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            replies = await conn.send("s@example.com", rcpts, message())
    assert {r: (x.kind, x.reason) for r, x in replies.items()} == {
        "ann@example.com": ("ok", "accepted"),
        "gone@example.com": ("permanent", "user_unknown"),
        "full@example.com": ("transient", "mailbox_full"),
        "bob@example.com": ("ok", "accepted"),
    }
    assert handler.delivered_to() == {"ann@example.com": 1, "bob@example.com": 1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["sequential", "pipelined"])
async def test_all_refused_sends_no_data_and_keeps_the_session(pipelining: bool) -> None:
    handler = ScriptedHandler(
        {"a@example.com": "550 5.1.1 unknown", "b@example.com": "550 5.1.1 unknown"},
        pipelining=pipelining,
    )
    with SMTPServer(handler) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            replies = await conn.send("s@example.com", ["a@example.com", "b@example.com"],
                                      message())
            assert all(r.reason == "user_unknown" for r in replies.values())
            if not pipelining:
                assert "DATA" not in handler.commands
            # the transaction is reset and the session goes on
            again = await conn.send("s@example.com", ["c@example.com"], message("c@example.com"))
            assert again["c@example.com"].ok
    assert handler.delivered_to() == {"c@example.com": 1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["sequential", "pipelined"])
async def test_sender_rejected_stops_campaign(pipelining: bool) -> None:
    handler = ScriptedHandler(mail_reply="553 5.7.1 Sender address rejected: not owned",
                              pipelining=pipelining)
    with SMTPServer(handler) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            replies = await conn.send("s@example.com", ["a@example.com"], message())
    reply = replies["a@example.com"]
    assert (reply.stage, reply.kind, reply.stops_campaign) == ("mail", "permanent", True)
    assert handler.deliveries == []


@pytest.mark.parametrize("pipelining", [False, True], ids=["sequential", "pipelined"])
async def test_drop_before_data_is_transient_and_nothing_delivered(pipelining: bool) -> None:
    handler = ScriptedHandler({"a@example.com": "drop_before_data"}, pipelining=pipelining)
    called: list[int] = []

    async def before() -> None:
        called.append(1)

    with SMTPServer(handler) as server:
        conn = await SMTPConnection.open(server.config())
        replies = await conn.send("s@example.com", ["a@example.com"], message(), before_data=before)
        assert not conn.usable
        await conn.close()
    reply = replies["a@example.com"]
    assert (reply.kind, reply.reason) in {("transient", "connection_lost")}
    assert called == [] and handler.deliveries == []


@pytest.mark.parametrize(
    ("fate", "reason"),
    [
        pytest.param("drop_after_dot", "connection_lost_after_data", id="dropped-after-dot"),
        pytest.param("hang_after_dot", "timeout_after_data", id="no-reply-after-dot"),
    ],
)
async def test_break_after_final_dot_is_unknown(fate: str, reason: str) -> None:
    handler = ScriptedHandler({"a@example.com": fate}, pipelining=True)
    with SMTPServer(handler) as server:
        conn = await SMTPConnection.open(server.config(timeout=0.5))
        replies = await conn.send("s@example.com", ["a@example.com"], message())
        await conn.close()
    assert (replies["a@example.com"].kind, replies["a@example.com"].reason) == ("unknown", reason)
    assert handler.delivered_to() == {"a@example.com": 1}  # the server did get it


async def test_before_data_runs_after_354_and_an_error_there_sends_nothing() -> None:
    handler = ScriptedHandler({"gone@example.com": "550 5.1.1 unknown"}, pipelining=True)
    seen: list[int] = []

    async def record() -> None:
        seen.append(len(handler.deliveries))  # the content has not gone out yet

    async def fail() -> None:
        raise RuntimeError("journal is full")

    with SMTPServer(handler) as server:
        conn = await SMTPConnection.open(server.config())
        await conn.send("s@example.com", ["gone@example.com"], message(), before_data=record)
        assert seen == []  # refused at RCPT: no intent needed
        await conn.send("s@example.com", ["a@example.com"], message(), before_data=record)
        assert seen == [0] and len(handler.deliveries) == 1
        with pytest.raises(RuntimeError, match="journal is full"):
            await conn.send("s@example.com", ["b@example.com"], message(), before_data=fail)
        assert not conn.usable
        await conn.close()
    assert handler.delivered_to() == {"a@example.com": 1}


async def test_throttle_421_marks_connection_unusable() -> None:
    handler = ScriptedHandler(throttle_after=2, pipelining=True)
    with SMTPServer(handler) as server:
        conn = await SMTPConnection.open(server.config())
        results = []
        for i in range(3):
            rcpt = f"u{i}@example.com"
            results.append((await conn.send("s@example.com", [rcpt], message()))[rcpt])
        assert not conn.usable
        await conn.close()
    assert [r.reason for r in results] == ["accepted", "accepted", "throttled"]
    assert results[2].throttled and results[2].code == 421


@pytest.mark.parametrize(
    ("server_utf8", "expected"),
    [
        pytest.param(False, ("permanent", "smtputf8_required"), id="server-without-smtputf8"),
        pytest.param(True, ("ok", "accepted"), id="server-with-smtputf8"),
    ],
)
async def test_smtputf8_address(server_utf8: bool, expected: tuple[str, str]) -> None:
    handler = ScriptedHandler()
    rcpt = "jörg@example.com"
    with SMTPServer(handler, smtputf8=server_utf8) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            replies = await conn.send("s@example.com", [rcpt], message("x@example.com"))
            ascii_ok = await conn.send("s@example.com", ["ann@example.com"], message())
    assert (replies[rcpt].kind, replies[rcpt].reason) == expected
    assert ascii_ok["ann@example.com"].ok
    assert handler.delivered_to()[rcpt] == (1 if server_utf8 else 0)


async def test_local_refusals_send_nothing() -> None:
    handler = ScriptedHandler()
    with SMTPServer(handler, size_limit=2000) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            big = await conn.send("s@example.com", ["a@example.com"], message(body="x" * 5000))
            injected = await conn.send("s@example.com", ["a@example.com>\r\nRSET"], message())
            bad_sender = await conn.send("s@ex\nample.com", ["a@example.com"], message())
            assert conn.usable
    assert big["a@example.com"].reason == "message_too_large"
    assert injected["a@example.com>\r\nRSET"].reason == "invalid_address"
    assert bad_sender["a@example.com"].reason == "invalid_address"
    assert "MAIL" not in handler.commands and handler.deliveries == []


# --------------------------------------------------------------------------------------------
# opening: connection, greeting, TLS, AUTH


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_a_clear_transport_error() -> None:
    port = _closed_port()
    with pytest.raises(TransportError) as caught:
        await SMTPConnection.open(SMTPConfig("127.0.0.1", port, tls="none", timeout=2))
    err = caught.value
    assert isinstance(err, SmtpkitError) and isinstance(err, ConnectionError)
    assert err.reply.reason == "connection_refused" and err.info is None
    assert str(err) == (
        f"SMTP connect step failed at 127.0.0.1:{port}: nothing is listening at that host and "
        "port (connection refused). Nothing is listening there; check the host and port, and "
        "that the server is running."
    )


@pytest.mark.parametrize(
    ("line", "reason", "stops"),
    [
        pytest.param(b"554 5.7.1 mx.test does not talk to you", "service_refused", True,
                     id="greeting-554"),
        pytest.param(b"421 4.3.2 mx.test busy, try later", "service_unavailable", False,
                     id="greeting-421"),
    ],
)
async def test_bad_greeting(line: bytes, reason: str, stops: bool) -> None:
    with RawServer(greeting_only(line)) as server:
        cfg = SMTPConfig(server.host, server.port, tls="none", timeout=2)
        with pytest.raises(TransportError) as caught:
            await SMTPConnection.open(cfg)
    assert caught.value.reply.stage == "greeting"
    assert caught.value.reply.reason == reason
    assert caught.value.reply.stops_campaign is stops


async def test_silent_server_times_out_at_greeting() -> None:
    with RawServer(silent()) as server:
        cfg = SMTPConfig(server.host, server.port, tls="none", timeout=0.3)
        with pytest.raises(TransportError) as caught:
            await SMTPConnection.open(cfg)
    assert (caught.value.reply.stage, caught.value.reply.reason) == ("greeting", "timeout")
    assert "tls='implicit'" in str(caught.value)


async def test_starttls_verified_with_ca_file(tls: TLSFiles) -> None:
    handler = ScriptedHandler(pipelining=True)
    with SMTPServer(handler, tls="starttls", server_context=tls.server_context) as server:
        async with await SMTPConnection.open(server.config(ca_file=tls.ca_file)) as conn:
            info = conn.info
            replies = await conn.send("s@example.com", ["a@example.com"], message())
    assert replies["a@example.com"].ok
    assert info.tls and info.tls_version in ("TLSv1.2", "TLSv1.3")
    assert info.cipher and info.peer_not_after is not None
    assert info.greeting and info.connect_ms is not None and info.connect_ms >= 0
    assert "starttls" not in info.esmtp  # extensions are those after STARTTLS
    assert info.logged_in is None


async def test_implicit_tls(tls: TLSFiles) -> None:
    handler = ScriptedHandler()
    with SMTPServer(handler, tls="implicit", server_context=tls.server_context) as server:
        async with await SMTPConnection.open(server.config(ca_file=tls.ca_file)) as conn:
            assert conn.info.tls
            assert (await conn.send("s@example.com", ["a@example.com"], message()))[
                "a@example.com"].ok
    assert handler.delivered_to() == {"a@example.com": 1}


async def test_untrusted_certificate_is_refused(tls: TLSFiles) -> None:
    handler = ScriptedHandler()
    with SMTPServer(handler, tls="starttls", server_context=tls.server_context) as server:
        with pytest.raises(TransportError) as caught:
            await SMTPConnection.open(server.config(ca_file=tls.other_ca_file))
    assert (caught.value.reply.reason, caught.value.reply.kind) == ("tls_failed", "permanent")
    assert "ca_file" in str(caught.value)
    assert caught.value.reply.stops_campaign


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_starttls_stripped_is_an_error_and_no_auth_is_sent(tls: TLSFiles) -> None:
    handler = ScriptedHandler(strip_starttls=True)
    with SMTPServer(handler, tls="starttls", server_context=tls.server_context,
                    auth=("ann", "s3cret-pw"), auth_over_plain=True) as server:
        cfg = server.config(ca_file=tls.ca_file, username="ann", password="s3cret-pw")
        with pytest.raises(TransportError) as caught:
            await SMTPConnection.open(cfg)
    assert caught.value.reply.reason == "tls_unavailable"
    assert caught.value.reply.stops_campaign
    assert "did not offer STARTTLS" in str(caught.value)
    assert handler.auth_attempts == 0 and "MAIL" not in handler.commands


async def test_wrong_tls_mode_for_implicit_port(tls: TLSFiles) -> None:
    with SMTPServer(ScriptedHandler(), tls="implicit", server_context=tls.server_context) as server:
        cfg = server.config(ca_file=tls.ca_file, tls="starttls", timeout=0.5)
        with pytest.raises(TransportError) as caught:
            await SMTPConnection.open(cfg)
    assert caught.value.reply.stage == "greeting"
    assert "tls='implicit'" in str(caught.value)


async def test_auth_over_tls(tls: TLSFiles) -> None:
    handler = ScriptedHandler()
    with SMTPServer(handler, tls="starttls", server_context=tls.server_context,
                    auth=("ann", "s3cret-pw")) as server:
        cfg = server.config(ca_file=tls.ca_file, username="ann", password="s3cret-pw")
        async with await SMTPConnection.open(cfg) as conn:
            assert conn.info.logged_in is True
            assert "PLAIN" in conn.info.auth_mechanisms
            assert (await conn.send("s@example.com", ["a@example.com"], message()))[
                "a@example.com"].ok
    assert handler.auth_attempts >= 1


async def test_wrong_password_raises_without_leaking_it(tls: TLSFiles) -> None:
    handler = ScriptedHandler()
    password = "Wr0ng-Secret-123"
    with SMTPServer(handler, tls="starttls", server_context=tls.server_context,
                    auth=("ann", "s3cret-pw")) as server:
        cfg = server.config(ca_file=tls.ca_file, username="ann", password=password)
        with pytest.raises(TransportError) as caught:
            await SMTPConnection.open(cfg)
        # login() on its own returns the verdict instead of raising
        conn = await SMTPConnection.open(cfg, login=False)
        verdict = await conn.login()
        await conn.close()
    err = caught.value
    assert err.reply.reason == "auth_failed" and err.reply.stops_campaign
    assert str(err).startswith(f"SMTP auth step failed at 127.0.0.1:{server.port}: the server "
                               "rejected the username or password (535")
    assert "Check the username and password; nothing was sent." in str(err)
    for text in (str(err), repr(err), repr(err.reply), repr(err.info), repr(cfg), str(verdict)):
        assert password not in text
    assert err.info is not None and err.info.logged_in is False
    assert verdict.reason == "auth_failed" and not verdict.ok
    assert handler.deliveries == [] and "MAIL" not in handler.commands


async def test_close_is_idempotent_and_abort_is_immediate() -> None:
    with SMTPServer(ScriptedHandler()) as server:
        conn = await SMTPConnection.open(server.config())
        await conn.close()
        await conn.close()
        assert not conn.usable and "closed" in repr(conn)
        other = await SMTPConnection.open(server.config())
        other.abort()
        assert not other.usable
        replies = await other.send("s@example.com", ["a@example.com"], message())
        assert replies["a@example.com"].reason == "connection_lost"


async def test_send_on_one_connection_at_a_time() -> None:
    handler = ScriptedHandler({"slow@example.com": "hang_after_dot"})
    with SMTPServer(handler) as server:
        conn = await SMTPConnection.open(server.config(timeout=1))
        first = asyncio.ensure_future(conn.send("s@example.com", ["slow@example.com"], message()))
        await asyncio.sleep(0.2)
        with pytest.raises(RuntimeError, match="already running"):
            await conn.send("s@example.com", ["b@example.com"], message())
        assert (await first)["slow@example.com"].kind == "unknown"
        await conn.close()


def test_reply_text_shape() -> None:
    reply = translate(SMTPResponse(550, "5.1.1 no such user"), stage="rcpt")
    assert str(reply) == "550 5.1.1 no such user"


async def test_lookahead_pipelines_the_next_envelope_with_the_content() -> None:
    handler = ScriptedHandler(pipelining=True)
    second = message("b@example.com")
    with SMTPServer(handler) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            first = await conn.send("s@example.com", ["a@example.com"], message(),
                                    lookahead=lambda: Envelope("s@example.com",
                                                               ("b@example.com",), second))
            # the server gets the next MAIL/RCPT before that message is even sent
            for _ in range(200):
                if handler.commands.count("RCPT") == 2:
                    break
                await asyncio.sleep(0.01)
            assert handler.commands.count("MAIL") == 2 and handler.commands.count("RCPT") == 2
            assert handler.delivered_to() == {"a@example.com": 1}
            then = await conn.send("s@example.com", ["b@example.com"], second)
            assert conn.usable
    assert first["a@example.com"].ok and then["b@example.com"].ok
    assert handler.delivered_to() == {"a@example.com": 1, "b@example.com": 1}
    assert handler.connections == 1


@pytest.mark.parametrize("how", ["another-message", "close"])
async def test_a_pipelined_envelope_is_never_filled_with_anything_else(how: str) -> None:
    handler = ScriptedHandler(pipelining=True)
    with SMTPServer(handler) as server:
        conn = await SMTPConnection.open(server.config())
        await conn.send("s@example.com", ["a@example.com"], message(),
                        lookahead=lambda: Envelope("s@example.com", ("b@example.com",),
                                                   message("b@example.com")))
        if how == "another-message":
            other = await conn.send("s@example.com", ["c@example.com"], message("c@example.com"))
            assert other["c@example.com"].reason == "connection_lost"  # retried elsewhere
        await conn.close()
        assert not conn.usable
        await asyncio.sleep(0.2)
    # the server was left waiting in DATA and got a hang-up, never a message for b or c
    assert handler.delivered_to() == {"a@example.com": 1}


async def test_lookahead_that_cannot_go_out_is_not_pipelined() -> None:
    handler = ScriptedHandler(pipelining=True)
    with SMTPServer(handler, smtputf8=False) as server:
        async with await SMTPConnection.open(server.config()) as conn:
            await conn.send("s@example.com", ["a@example.com"], message(),
                            lookahead=lambda: Envelope("s@example.com", ("jörg@example.com",),
                                                       message()))
            assert handler.commands.count("MAIL") == 1
            refused = await conn.send("s@example.com", ["jörg@example.com"], message())
            ok = await conn.send("s@example.com", ["c@example.com"], message())
    assert refused["jörg@example.com"].reason == "smtputf8_required"
    assert ok["c@example.com"].ok
