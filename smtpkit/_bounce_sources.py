"""Where bounce messages come from: .eml files and folders, mbox files, Maildirs, IMAP folders.

Private helper of :mod:`smtpkit.bounces`. Every source yields ``(raw bytes, label)`` pairs; the
label says where the message is (a file path, ``mbox#key`` or an ``imap://`` URL with the UID).

IMAP uses the standard library's blocking :mod:`imaplib`: reading a mailbox is one sequential
conversation (search, then fetch in batches), ``read_bounces`` is a synchronous function that
runs in the caller's thread, and nothing else waits on it, so an event loop would add nothing.
The folder is opened read-only and messages are fetched with ``BODY.PEEK[]``: reading bounces
never marks them seen, moves or deletes them.

Example:
    >>> from smtpkit._bounce_sources import IMAPSource
    >>> IMAPSource("imap.example.com", 993, "bounces", "hunter2")
    IMAPSource(host='imap.example.com', port=993, username='bounces', folder='INBOX', \
tls='implicit')
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import imaplib
import json
import mailbox
import os
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

from .config import Secret
from .errors import ConfigError, InputError

__all__ = ["IMAP_FETCH_BATCH", "IMAPSource", "iter_messages"]

#: How many messages one IMAP ``UID FETCH`` asks for.
IMAP_FETCH_BATCH = 100
_IMAP_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UID_IN_FETCH = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)


@dataclasses.dataclass(repr=False, eq=False)
class IMAPSource:
    """An IMAP folder to read bounces from, over verified TLS; remembers what it has read.

    A second ``read_bounces(source)`` with the same object returns only messages that arrived
    since the first: the source keeps the folder's UIDVALIDITY and the highest UID it has read
    (and, with ``state_file``, stores them as JSON so that another process continues where this
    one stopped). When the server reports a new UIDVALIDITY the folder is read again from the
    start, as RFC 3501 requires.

    Parameters:
        password: a string, a :class:`smtpkit.config.Secret`, or a callable returning it; never
            shown in ``repr`` or errors.
        tls: ``"implicit"`` (TLS from the first byte, port 993) or ``"starttls"`` (port 143,
            upgraded before login). There is no plaintext mode.
        ca_file: PEM file of the certificate authorities to trust instead of the system store.
        state_file: JSON file that keeps UIDVALIDITY and the last UID read across processes.

    Example:
        >>> source = IMAPSource("imap.example.com", 993, "bounces", "hunter2")
        >>> "hunter2" in repr(source)
        False
    """

    host: str
    port: int = 993
    username: str = ""
    password: Secret | str | Any = ""
    folder: str = "INBOX"
    tls: Literal["implicit", "starttls"] = "implicit"
    ca_file: str | None = None
    state_file: str | os.PathLike[str] | None = None
    timeout: float = 30.0
    _uidvalidity: int | None = dataclasses.field(default=None, init=False)
    _last_uid: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(
                "IMAPSource needs a host name or address, such as 'imap.example.com'."
            )
        if self.tls not in ("implicit", "starttls"):
            raise ConfigError(
                f"IMAPSource tls must be 'implicit' (port 993) or 'starttls' (port 143); got "
                f"{self.tls!r}. Plaintext IMAP is not offered: it would send the password in clear."
            )
        port_ok = isinstance(self.port, int) and not isinstance(self.port, bool)
        if not port_ok or not 0 < self.port < 65536:
            raise ConfigError(f"port must be an integer from 1 to 65535; got {self.port!r}.")
        if not self.username:
            raise ConfigError("IMAPSource needs the username of the mailbox that receives bounces.")
        self.password = Secret(cast("str", self.password))
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise ConfigError(f"ca_file {self.ca_file!r} does not exist or is not a file.")
        self._load_state()

    def __repr__(self) -> str:
        return (
            f"IMAPSource(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"folder={self.folder!r}, tls={self.tls!r})"
        )

    @property
    def last_uid(self) -> int:
        """The highest UID read so far (0 before the first read)."""
        return self._last_uid

    # -- state ---------------------------------------------------------------------------------

    def _state_key(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"

    def _load_state(self) -> None:
        if self.state_file is None or not os.path.exists(self.state_file):
            return
        try:
            state = json.loads(Path(self.state_file).read_text("utf-8")).get(self._state_key(), {})
            self._uidvalidity = int(state["uidvalidity"]) if "uidvalidity" in state else None
            self._last_uid = int(state.get("last_uid", 0))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"The IMAP state file {os.fspath(self.state_file)!r} cannot be read ({exc}); "
                "delete it to read the folder again from the start."
            ) from exc

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        path = Path(self.state_file)
        state: dict[str, Any] = {}
        if path.exists():
            try:
                state = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                state = {}
        state[self._state_key()] = {"uidvalidity": self._uidvalidity, "last_uid": self._last_uid}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2), "utf-8")
        os.replace(tmp, path)

    # -- reading -------------------------------------------------------------------------------

    def _connect(self) -> imaplib.IMAP4:
        context = ssl.create_default_context(cafile=self.ca_file)
        where = f"{self.host}:{self.port}"
        try:
            if self.tls == "implicit":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=context, timeout=self.timeout
                )
            else:
                conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                conn.starttls(ssl_context=context)
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"The certificate of the IMAP server {where} could not be verified "
                f"({exc.verify_message}); pass ca_file= with the CA that signed it."
            ) from exc
        except (OSError, imaplib.IMAP4.error) as exc:
            raise InputError(
                f"Could not open a TLS connection to the IMAP server {where} ({exc}); check the "
                "host, the port and tls='implicit' (993) or tls='starttls' (143)."
            ) from exc
        try:
            self._login(conn, where)
        except BaseException:
            _close(conn)
            raise
        return conn

    def _login(self, conn: imaplib.IMAP4, where: str) -> None:
        """Log in with LOGIN, or with AUTHENTICATE PLAIN (UTF-8) when the login is not ASCII.

        imaplib sends LOGIN arguments as ASCII: a non-ASCII password raised a UnicodeEncodeError
        whose ``object`` was the whole command, password included. Every error raised here is
        a ConfigError or InputError that names the user and never holds the password.
        """
        password: str = self.password.reveal()  # type: ignore[union-attr]
        try:
            if self.username.isascii() and password.isascii():
                conn.login(self.username, password)
            else:
                conn.authenticate("PLAIN", _plain_credentials(self.username, password, where,
                                                               conn.capabilities))
        except imaplib.IMAP4.error as exc:  # the server's reply, which holds no password
            raise ConfigError(
                f"The IMAP server {where} refused the login of user {self.username!r}; check the "
                "username and the password."
            ) from exc
        except OSError as exc:
            raise InputError(
                f"The connection to the IMAP server {where} failed while logging in ({exc}); "
                "try again later."
            ) from exc

    def fetch(self, *, since: dt.datetime | None = None) -> Iterator[tuple[bytes, str]]:
        """Yield ``(raw message, label)`` for each message not read before, then remember them."""
        conn = self._connect()
        try:
            typ, _ = conn.select(_quote_folder(self.folder), readonly=True)
            if typ != "OK":
                raise InputError(
                    f"The IMAP folder {self.folder!r} cannot be opened on {self.host}; check the "
                    "folder name (it is case-sensitive except for INBOX)."
                )
            uidvalidity = _response_int(conn, "UIDVALIDITY")
            if uidvalidity != self._uidvalidity:
                self._uidvalidity, self._last_uid = uidvalidity, 0
            criteria = [f"UID {self._last_uid + 1}:*"]
            if since is not None:
                day = since.astimezone(dt.UTC)
                criteria.append(f"SINCE {day.day}-{_IMAP_MONTHS[day.month - 1]}-{day.year}")
            typ, data = conn.uid("SEARCH", None, *criteria)  # type: ignore[arg-type]
            if typ != "OK":
                raise InputError(f"The IMAP server {self.host} refused to search {self.folder!r}.")
            # "n:*" always matches the last message, even when its UID is below n
            uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > self._last_uid)
            base = f"imap://{self.username}@{self.host}:{self.port}/{self.folder};UIDVALIDITY={uidvalidity}"
            for start in range(0, len(uids), IMAP_FETCH_BATCH):
                batch = uids[start : start + IMAP_FETCH_BATCH]
                typ, items = conn.uid("FETCH", ",".join(map(str, batch)), "(UID BODY.PEEK[])")
                if typ != "OK":
                    raise InputError(f"The IMAP server {self.host} refused to fetch messages.")
                for item in items:
                    if not isinstance(item, tuple) or len(item) < 2:
                        continue
                    match = _UID_IN_FETCH.search(item[0])
                    uid = int(match.group(1)) if match else 0
                    yield bytes(item[1]), f"{base}/;UID={uid}"
            if uids:
                self._last_uid = max(uids)
            self._save_state()
        finally:
            _close(conn)


def _plain_credentials(
    username: str, password: str, where: str, capabilities: tuple[str, ...]
) -> Callable[[bytes], bytes]:
    """The SASL PLAIN response (RFC 4616: UTF-8) for AUTHENTICATE, checked before it is sent."""
    if "AUTH=PLAIN" not in capabilities:
        raise ConfigError(
            f"The IMAP username or password of user {username!r} has non-ASCII characters, "
            f"which IMAP LOGIN cannot carry, and the server {where} does not offer "
            "AUTHENTICATE PLAIN; use an ASCII password for this mailbox."
        )
    try:
        response = f"\0{username}\0{password}".encode()
    except UnicodeEncodeError:  # an unpaired surrogate; the error's .object holds the password
        response = b"\0"
    if response.count(b"\0") != 2:
        raise ConfigError(
            f"The IMAP username or password of user {username!r} holds a character that cannot "
            "be sent (a NUL or an unpaired surrogate); check how the password is stored."
        ) from None
    return lambda _challenge: response


def _quote_folder(folder: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", folder):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _response_int(conn: imaplib.IMAP4, name: str) -> int | None:
    _, data = conn.response(name)
    try:
        return int(data[0]) if data and data[0] is not None else None
    except (TypeError, ValueError):
        return None


def _close(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except (TimeoutError, OSError, imaplib.IMAP4.error):
        pass


# --- files ------------------------------------------------------------------------------------


def _is_maildir(folder: Path) -> bool:
    return (folder / "cur").is_dir() and (folder / "new").is_dir()


def iter_messages(source: Any, /) -> Iterator[tuple[bytes, str]]:
    """Yield ``(raw message, label)`` from a path (file or folder) or a ``mailbox.Mailbox``."""
    if isinstance(source, mailbox.Mailbox):
        yield from _iter_mailbox(source, getattr(source, "_path", type(source).__name__))
        return
    if not isinstance(source, str | os.PathLike):
        raise InputError(
            "read_bounces needs a path to a .eml file, a folder of .eml files, an mbox file or a "
            f"Maildir, a mailbox.Mailbox, or an IMAPSource; got {type(source).__name__}."
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{os.fspath(path)!r} does not exist; give a .eml file, an mbox file, a "
                         "folder of .eml files or a Maildir.")
    if path.is_dir():
        if _is_maildir(path):
            yield from _iter_maildir(path)
        else:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".eml")
            for file in files:
                yield file.read_bytes(), os.fspath(file)
        return
    with path.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        yield from _iter_mailbox(mailbox.mbox(path, create=False), os.fspath(path))
    else:
        yield path.read_bytes(), os.fspath(path)


def _iter_maildir(path: Path) -> Iterator[tuple[bytes, str]]:
    # reading files directly (not mailbox.Maildir) keeps the label a real path and skips tmp/
    names: list[Path] = []
    for sub in ("new", "cur"):
        folder = path / sub
        names.extend(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for file in sorted(names, key=lambda p: p.name):
        try:
            data = file.read_bytes()
        except FileNotFoundError:  # moved from new/ to cur/ by a mail client meanwhile
            continue
        yield data, os.fspath(file)


def _iter_mailbox(box: mailbox.Mailbox[Any], label: str) -> Iterator[tuple[bytes, str]]:
    for key in box.iterkeys():
        try:
            data = box.get_bytes(key)
        except KeyError:
            continue
        yield data, f"{label}#{key}"
