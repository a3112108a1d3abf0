"""read_bounces from IMAP, against a real Dovecot started on 127.0.0.1 by the fixture (TLS).

The fixture writes its own configuration, users file and self-signed certificate into a temporary
folder, runs ``dovecot -F`` (foreground) on free loopback ports, and stops it by PID. Skipped
when Dovecot is not installed (CI installs ``dovecot-imapd`` and then requires it).
"""

from __future__ import annotations

import imaplib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_component

from smtpkit.bounces import IMAPSource, read_bounces
from smtpkit.errors import ConfigError

DATA = Path(__file__).parent / "data" / "bounces"
USER, PASSWORD = "bounces", "imap-Secret-42"
# IMAP LOGIN is ASCII-only: this one needs AUTHENTICATE PLAIN, whose SASL string is UTF-8
UTF8_USER, UTF8_PASSWORD = "bounces-utf8", "pässwörd-ß3cret-€"
DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot")
                                      else None)
START_TIMEOUT = 15.0


@dataclass
class Dovecot:
    tls_port: int
    starttls_port: int
    cert: str
    folder: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def _accounts() -> tuple[str, str, int, int]:
    """(internal user, login user, mail uid, mail gid) that Dovecot will accept."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.getuid())
        return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid
    internal = "dovecot" if _has_user("dovecot") else "nobody"
    login = "dovenull" if _has_user("dovenull") else internal
    mail = pwd.getpwnam("nobody")  # Dovecot refuses to give mail processes uid 0
    return internal, login, mail.pw_uid, mail.pw_gid


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"dovecot did not listen on {port} within {START_TIMEOUT}s")


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with _running_dovecot("plain login") as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_login_only() -> Iterator[Dovecot]:
    """A Dovecot that offers only the LOGIN mechanism (no AUTH=PLAIN)."""
    with _running_dovecot("login") as server:
        yield server


@contextmanager
def _running_dovecot(mechanisms: str) -> Iterator[Dovecot]:
    require_component("dovecot", DOVECOT is not None, "apt-get install dovecot-imapd")
    require_component("openssl", shutil.which("openssl") is not None, "apt-get install openssl")
    assert DOVECOT is not None
    # Dovecot's unprivileged processes must reach the files: pytest's own tmp root is 0700
    folder = Path(tempfile.mkdtemp(prefix="smtpkit-dovecot-"))
    folder.chmod(0o755)
    cert, key = _make_certificate(folder)
    internal, login, uid, gid = _accounts()
    mail = folder / "mail"
    home = folder / "home"
    for path in (mail, home):
        path.mkdir()
        os.chown(path, uid, gid)
    (folder / "users").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}::::::\n{UTF8_USER}:{{PLAIN}}{UTF8_PASSWORD}::::::\n",
        encoding="utf-8",
    )
    tls_port, starttls_port = _free_port(), _free_port()
    log = folder / "dovecot.log"
    config = folder / "dovecot.conf"
    config.write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {log}
info_log_path = {log}
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {min(uid, 500)}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = {mechanisms}
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
""")
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_port(tls_port, process, log)
        _wait_for_port(starttls_port, process, log)
        yield Dovecot(tls_port, starttls_port, str(cert), folder)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


def _append(server: Dovecot, *names: str) -> None:
    context = ssl.create_default_context(cafile=server.cert)
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=context, timeout=10)
    try:
        conn.login(USER, PASSWORD)
        for name in names:
            typ, _ = conn.append("INBOX", None, None, (DATA / name).read_bytes())
            assert typ == "OK"
    finally:
        conn.logout()


def test_imap_reads_new_messages_only(dovecot: Dovecot, tmp_path: Path) -> None:
    _append(dovecot, "gmail_user_unknown.eml", "arf_yahoo_complaint.eml")
    state = tmp_path / "imap-state.json"
    source = IMAPSource("127.0.0.1", dovecot.tls_port, USER, PASSWORD, ca_file=dovecot.cert,
                        state_file=state)
    first = read_bounces(source)
    assert sorted(first["recipient"]) == ["annoyed@yahoo.com", "nosuchperson@gmail.com"]
    assert all(label.startswith(f"imap://{USER}@127.0.0.1:{dovecot.tls_port}/INBOX;UIDVALIDITY=")
               for label in first["source"])
    assert source.last_uid == 2
    assert read_bounces(source).empty, "nothing new: nothing read"

    _append(dovecot, "qmail_no_mailbox.eml")
    second = read_bounces(source)
    assert second["recipient"].tolist() == ["mate@example.com.au"]
    assert second["source"].iloc[0].endswith(";UID=3")

    stored = json.loads(state.read_text())
    assert stored[f"{USER}@127.0.0.1:{dovecot.tls_port}/INBOX"]["last_uid"] == 3
    again = IMAPSource("127.0.0.1", dovecot.tls_port, USER, PASSWORD, ca_file=dovecot.cert,
                       state_file=state)
    assert read_bounces(again).empty, "a new process continues from the state file"
    fresh = IMAPSource("127.0.0.1", dovecot.tls_port, USER, PASSWORD, ca_file=dovecot.cert)
    assert len(read_bounces(fresh)) == 3, "without state every message is read"
    assert len(read_bounces(fresh)) == 0


def test_imap_over_starttls(dovecot: Dovecot) -> None:
    _append(dovecot, "postfix_mailbox_full.eml")
    source = IMAPSource("127.0.0.1", dovecot.starttls_port, USER, PASSWORD, tls="starttls",
                        ca_file=dovecot.cert)
    frame = read_bounces(source)
    assert "full.box@example.net" in set(frame["recipient"])
    assert read_bounces(source).empty


def test_imap_since_filters_by_arrival(dovecot: Dovecot) -> None:
    source = IMAPSource("127.0.0.1", dovecot.tls_port, USER, PASSWORD, ca_file=dovecot.cert)
    frame = read_bounces(source, since="2026-03-05T00:00:00Z")
    assert "nosuchperson@gmail.com" not in set(frame["recipient"])  # arrived on 3 March
    assert "mate@example.com.au" in set(frame["recipient"])


def test_imap_wrong_password_is_a_clear_error_without_the_password(dovecot: Dovecot) -> None:
    source = IMAPSource("127.0.0.1", dovecot.tls_port, USER, "wrong-Pass-99",
                        ca_file=dovecot.cert)
    with pytest.raises(ConfigError, match=r"refused the login of user 'bounces'") as info:
        read_bounces(source)
    assert "wrong-Pass-99" not in str(info.value)
    assert "wrong-Pass-99" not in repr(source)


def test_imap_unverified_certificate_is_refused(dovecot: Dovecot) -> None:
    source = IMAPSource("127.0.0.1", dovecot.tls_port, USER, PASSWORD)  # system CAs only
    with pytest.raises(ConfigError, match=r"could not be verified .*pass ca_file="):
        read_bounces(source)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"tls": "none"}, r"Plaintext IMAP is not offered", id="no-plaintext"),
        pytest.param({"port": 0}, r"port must be an integer from 1 to 65535", id="bad-port"),
        pytest.param({"username": ""}, r"needs the username", id="no-user"),
        pytest.param({"ca_file": "/no/such/ca.pem"}, r"does not exist", id="missing-ca"),
    ],
)
def test_imap_source_validates_its_options(options: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"host": "127.0.0.1", "port": 993, "username": USER,
                                 "password": PASSWORD}
    values.update(options)
    with pytest.raises(ConfigError, match=message):
        IMAPSource(**values)  # type: ignore[arg-type]


# --- non-ASCII credentials --------------------------------------------------------------------


def _append_as_utf8_user(server: Dovecot, *names: str) -> None:
    context = ssl.create_default_context(cafile=server.cert)
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=context, timeout=10)
    try:
        response = f"\0{UTF8_USER}\0{UTF8_PASSWORD}".encode()
        conn.authenticate("PLAIN", lambda _challenge: response)
        for name in names:
            typ, _ = conn.append("INBOX", None, None, (DATA / name).read_bytes())
            assert typ == "OK"
    finally:
        conn.logout()


def _assert_secret_not_in(error: BaseException, secret: str) -> None:
    """Neither the error nor any exception chained to it shows or holds the secret."""
    seen: BaseException | None = error
    while seen is not None:
        assert not isinstance(seen, UnicodeError), f"a raw {type(seen).__name__} is chained"
        for text in (str(seen), repr(seen), repr(seen.args), repr(vars(seen))):
            assert secret not in text
        seen = seen.__cause__ or seen.__context__


def test_imap_non_ascii_password_logs_in_with_authenticate_plain(dovecot: Dovecot) -> None:
    _append_as_utf8_user(dovecot, "gmail_user_unknown.eml")
    for port, tls in ((dovecot.tls_port, "implicit"), (dovecot.starttls_port, "starttls")):
        source = IMAPSource("127.0.0.1", port, UTF8_USER, UTF8_PASSWORD, tls=tls,  # type: ignore[arg-type]
                            ca_file=dovecot.cert)
        frame = read_bounces(source)
        assert frame["recipient"].tolist() == ["nosuchperson@gmail.com"], tls
        assert read_bounces(source).empty


def test_imap_wrong_non_ascii_password_is_refused_without_the_password(dovecot: Dovecot) -> None:
    secret = "wrong-pässwort-Ω9"
    source = IMAPSource("127.0.0.1", dovecot.tls_port, UTF8_USER, secret, ca_file=dovecot.cert)
    with pytest.raises(ConfigError, match=r"refused the login of user 'bounces-utf8'") as info:
        read_bounces(source)
    _assert_secret_not_in(info.value, secret)


def test_imap_password_that_cannot_be_encoded_is_a_clear_error(dovecot: Dovecot) -> None:
    secret = "s3cret-\udcff-pw"  # an unpaired surrogate, as os.fsdecode makes of a stray byte
    source = IMAPSource("127.0.0.1", dovecot.tls_port, USER, secret, ca_file=dovecot.cert)
    with pytest.raises(ConfigError, match=r"holds a character that cannot be sent") as info:
        read_bounces(source)
    _assert_secret_not_in(info.value, secret)


def test_imap_non_ascii_password_needs_auth_plain(dovecot_login_only: Dovecot) -> None:
    # (Dovecot serves the IMAP LOGIN command through its PLAIN mechanism, so here nobody can log
    # in; what matters is that the client sees no AUTH=PLAIN and says so before sending anything)
    server = dovecot_login_only
    source = IMAPSource("127.0.0.1", server.tls_port, UTF8_USER, UTF8_PASSWORD,
                        ca_file=server.cert)
    with pytest.raises(ConfigError, match=r"non-ASCII characters, which IMAP LOGIN cannot carry,"
                                          r" and the server .* does not offer AUTHENTICATE PLAIN"
                       ) as info:
        read_bounces(source)
    _assert_secret_not_in(info.value, UTF8_PASSWORD)
