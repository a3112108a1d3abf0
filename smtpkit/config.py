"""How to reach an SMTP server: a frozen, validated value object that protects the password.

``SMTPConfig`` is checked when it is built, so a campaign never starts with a configuration that
would send a password in clear text or talk plaintext across the internet:

* ``tls="starttls"`` (default, port 587) or ``"implicit"`` (port 465): certificates are always
  verified, against the system store or ``ca_file``;
* ``tls="none"`` only to a loopback host unless ``insecure=True`` is passed, and never with AUTH.

The password is a :class:`Secret`: it never appears in ``repr``, ``str``, HTML reprs, exceptions
or logs. Read it from the environment (:meth:`SMTPConfig.from_env`), from the OS keyring
(:meth:`Secret.from_keyring`) or a prompt (:meth:`Secret.prompt`) instead of a notebook literal.

Example:
    >>> from smtpkit.config import SMTPConfig
    >>> cfg = SMTPConfig("smtp.example.com", username="ann", password="hunter2")
    >>> cfg.port, cfg.tls
    (587, 'starttls')
    >>> "hunter2" in repr(cfg)
    False
"""

from __future__ import annotations

import dataclasses
import hmac
import html
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError

if TYPE_CHECKING:
    from .dns import Resolver

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_TIMEOUT",
    "TLS_MODES",
    "MXDelivery",
    "SMTPConfig",
    "Secret",
    "TLSMode",
]

TLSMode = Literal["starttls", "implicit", "none"]
#: The accepted values of ``tls``.
TLS_MODES: tuple[str, ...] = ("starttls", "implicit", "none")
#: The port used when none is given, by TLS mode (submission, submissions, SMTP).
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "implicit": 465, "none": 25}
#: Seconds to wait for a connection or a reply before giving up on it.
DEFAULT_TIMEOUT = 30.0
_REDACTED = "********"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_IN_HOST = re.compile(r"[\s/\x00-\x1f\x7f]")


class Secret:
    """A string that does not show itself: ``repr`` and ``str`` print ``********``.

    ``reveal()`` returns the value; a callable given instead of a string is called on first
    ``reveal()`` (so a keyring or a prompt is asked only when a connection needs it).

    Example:
        >>> s = Secret("hunter2")
        >>> print(s, repr(s), s.reveal())
        ******** Secret('********') hunter2
    """

    __slots__ = ("_source", "_value")

    def __init__(self, value: str | Callable[[], str], /) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not (isinstance(value, str) or callable(value)):
            raise ConfigError(
                f"A password must be a string or a callable returning one, not "
                f"{type(value).__name__}."
            )
        self._value: str | None = value if isinstance(value, str) else None
        self._source: Callable[[], str] | None = None if isinstance(value, str) else value

    def reveal(self) -> str:
        """Return the secret value (asking its source the first time, if it has one)."""
        if self._value is None:
            assert self._source is not None
            value = self._source()
            if not isinstance(value, str):
                raise ConfigError("The password source did not return a string.")
            self._value = value
        return self._value

    @classmethod
    def from_keyring(cls, service: str, username: str, /) -> Secret:
        """A password read from the OS keyring (``pip install keyring``) when first needed.

        Store it once with ``keyring set <service> <username>`` in a terminal.
        """

        def read() -> str:
            try:
                import keyring
            except ImportError as exc:
                raise ConfigError(
                    "Reading the password from the OS keyring needs the 'keyring' package; "
                    "install it with 'pip install keyring'."
                ) from exc
            value = keyring.get_password(service, username)
            if value is None:
                raise ConfigError(
                    f"The OS keyring has no password for service {service!r} and user "
                    f"{username!r}; store one with 'keyring set {service} {username}'."
                )
            return str(value)

        return cls(read)

    @classmethod
    def prompt(cls, prompt: str = "SMTP password: ", /) -> Secret:
        """A password typed by the user (``getpass``; hidden in a terminal and in Jupyter)."""

        def ask() -> str:
            import getpass

            return getpass.getpass(prompt)

        return cls(ask)

    def __repr__(self) -> str:
        return f"Secret('{_REDACTED}')"

    def __str__(self) -> str:
        return _REDACTED

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal().encode(), other.reveal().encode())

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> Any:
        raise TypeError("A Secret cannot be pickled; pass the configuration, not its password.")

    # A Secret never changes, so copies may share it (copy.deepcopy and dataclasses.asdict of a
    # config work without ever pickling the password).
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, repr=False)
class SMTPConfig:
    """Where and how to submit mail: host, port, TLS mode, credentials, timeouts.

    Parameters:
        tls: ``"starttls"`` (upgrade after EHLO; a server that stops offering STARTTLS is an
            error, never a plaintext fallback), ``"implicit"`` (TLS from the first byte, port 465)
            or ``"none"`` (plaintext: loopback only unless ``insecure=True``; never with AUTH).
        password: a string, a :class:`Secret`, or a callable returning the password.
        ca_file: PEM file of the certificate authorities to trust instead of the system store.
        insecure: allow ``tls="none"`` to a host that is not loopback.

    Example:
        >>> SMTPConfig("127.0.0.1", 2525, tls="none")
        SMTPConfig(host='127.0.0.1', port=2525, tls='none')
    """

    host: str
    port: int | None = None
    _: dataclasses.KW_ONLY
    tls: TLSMode = "starttls"
    username: str | None = None
    password: Secret | None = None
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None
    local_hostname: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(
                "SMTPConfig needs a host name or address, such as 'smtp.example.com'."
            )
        if _NOT_IN_HOST.search(self.host):
            raise ConfigError(
                f"The SMTP host {self.host!r} contains characters a host cannot have."
            )
        if self.tls not in TLS_MODES:
            raise ConfigError(f"tls must be one of {', '.join(TLS_MODES)}; got {self.tls!r}.")
        port = DEFAULT_PORTS[self.tls] if self.port is None else self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"port must be an integer from 1 to 65535; got {self.port!r}.")
        object.__setattr__(self, "port", port)
        if self.password is not None and not isinstance(self.password, Secret):
            object.__setattr__(self, "password", Secret(self.password))
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        if (self.username is None) != (self.password is None):
            raise ConfigError(
                "Give both username and password for AUTH, or neither to send without logging in."
            )
        if self.username is not None and (
            not isinstance(self.username, str)
            or not self.username
            or _CONTROL.search(self.username)
        ):
            raise ConfigError(
                "username must be a non-empty string without line breaks or control characters."
            )
        if self.local_hostname is not None and (
            not isinstance(self.local_hostname, str)
            or not self.local_hostname
            or _NOT_IN_HOST.search(self.local_hostname)
        ):
            raise ConfigError(
                f"local_hostname {self.local_hostname!r} must be a host name such as "
                "'mail.example.com', without spaces or control characters (it is sent in EHLO)."
            )
        if self.tls == "none":
            if self.username is not None:
                raise ConfigError(
                    "AUTH is never sent over an unencrypted connection; use tls='starttls' or "
                    "tls='implicit' with a username and password."
                )
            if not is_loopback(self.host) and not self.insecure:
                raise ConfigError(
                    f"tls='none' would send mail in clear text to {self.host}; use "
                    "tls='starttls' or tls='implicit', or pass insecure=True if you really mean "
                    "it (plaintext is allowed without it only to 127.0.0.1 / ::1 / localhost)."
                )
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise ConfigError(f"ca_file {self.ca_file!r} does not exist or is not a file.")
        if self.tls == "implicit" and self.port == 587:
            raise ConfigError(
                "Port 587 expects STARTTLS, not implicit TLS; use tls='starttls' or port 465."
            )
        if self.tls == "starttls" and self.port == 465:
            raise ConfigError(
                "Port 465 expects implicit TLS; use tls='implicit' (or another port for STARTTLS)."
            )

    @property
    def server(self) -> str:
        """``host:port``, the name of this server in outcome frames."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def from_env(
        cls, prefix: str = "SMTP_", /, *, environ: Mapping[str, str] | None = None
    ) -> SMTPConfig:
        """Build a config from ``{prefix}HOST``, ``PORT``, ``TLS``, ``USERNAME``, ``PASSWORD``,
        ``TIMEOUT``, ``CA_FILE``, ``LOCAL_HOSTNAME`` and ``INSECURE`` environment variables.

        Example:
            >>> SMTPConfig.from_env(environ={"SMTP_HOST": "127.0.0.1", "SMTP_TLS": "none"})
            SMTPConfig(host='127.0.0.1', port=25, tls='none')
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(prefix + name)
            return value if value not in (None, "") else None

        host = get("HOST")
        if host is None:
            raise ConfigError(f"Set {prefix}HOST (and optionally {prefix}PORT, {prefix}TLS, ...).")
        port_text = get("PORT")
        try:
            port = int(port_text) if port_text is not None else None
            timeout = float(get("TIMEOUT") or DEFAULT_TIMEOUT)
        except ValueError as exc:
            raise ConfigError(f"{prefix}PORT and {prefix}TIMEOUT must be numbers.") from exc
        password = get("PASSWORD")
        return cls(
            host,
            port,
            tls=(get("TLS") or "starttls").lower(),  # type: ignore[arg-type]
            username=get("USERNAME"),
            password=Secret(password) if password is not None else None,
            timeout=timeout,
            ca_file=get("CA_FILE"),
            local_hostname=get("LOCAL_HOSTNAME"),
            insecure=(get("INSECURE") or "").lower() in {"1", "true", "yes"},
        )

    def replace(self, **changes: Any) -> SMTPConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def _fields_for_display(self) -> list[tuple[str, str]]:
        shown = [("host", repr(self.host)), ("port", repr(self.port)), ("tls", repr(self.tls))]
        if self.username is not None:
            shown += [("username", repr(self.username)), ("password", repr(_REDACTED))]
        if self.ca_file is not None:
            shown.append(("ca_file", repr(self.ca_file)))
        if self.local_hostname is not None:
            shown.append(("local_hostname", repr(self.local_hostname)))
        if self.timeout != DEFAULT_TIMEOUT:
            shown.append(("timeout", repr(self.timeout)))
        if self.insecure:
            shown.append(("insecure", "True"))
        return shown

    def __repr__(self) -> str:
        return "SMTPConfig(" + ", ".join(f"{k}={v}" for k, v in self._fields_for_display()) + ")"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._fields_for_display()
        )
        return f"<table><caption>SMTPConfig</caption>{rows}</table>"


@dataclasses.dataclass(frozen=True, repr=False)
class MXDelivery:
    """Deliver straight to each recipient domain's MX hosts instead of through a relay.

    ``send(..., config="mx")`` uses ``MXDelivery()``: the public DNS through ``dns.Resolver``,
    port 25, verified STARTTLS. The Sandbox exposes ``box.mx``, an ``MXDelivery`` whose resolver
    answers for its simulated domains and whose port is the sandbox's.

    Parameters:
        tls: ``"starttls"`` (required and verified), or ``"none"`` (loopback or ``insecure``).

    Example:
        >>> MXDelivery(port=2525).port
        2525
    """

    resolver: Resolver | None = None
    port: int = 25
    tls: Literal["starttls", "none"] = "starttls"
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None
    local_hostname: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.tls not in ("starttls", "none"):
            raise ConfigError("MXDelivery tls must be 'starttls' or 'none'.")
        if self.tls == "none" and not self.insecure:
            # MX hosts are found at send time and are, by nature, other people's servers.
            raise ConfigError(
                "MXDelivery(tls='none') would deliver in clear text to every recipient's mail "
                "server; use tls='starttls', or pass insecure=True if you really mean it."
            )
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"port must be an integer from 1 to 65535; got {port!r}.")
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise ConfigError(f"ca_file {self.ca_file!r} does not exist or is not a file.")

    def config_for(self, address: str) -> SMTPConfig:
        """The ``SMTPConfig`` that reaches one MX host address found through the resolver."""
        return SMTPConfig(
            address,
            self.port,
            tls=self.tls,
            timeout=self.timeout,
            ca_file=self.ca_file,
            local_hostname=self.local_hostname,
            insecure=self.insecure,
        )

    def __repr__(self) -> str:
        return f"MXDelivery(port={self.port}, tls={self.tls!r})"
