"""The Sandbox's simulated internet: which domains exist and how each one answers.

A :class:`World` is a frozen value object. Every decision it makes is a pure function of the
address, the attempt number and the world's ``seed`` (a BLAKE2 hash, never Python's salted
``hash()``), so a demo or a test sees the same outcomes on every run and every machine. The
stateful parts (greylisting clocks, throttling counters) live in the server, which asks the world
for the rules.

Example:
    >>> world = World(addresses={"ann@example.com": "user_unknown"})
    >>> world.outcome("Ann@Example.com"), world.outcome("bob@example.com")
    ('user_unknown', 'accept')
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import statistics
import types
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import idna

from ._sample import (
    COMPANY_DOMAINS,
    DISPOSABLE_DOMAINS,
    IDN_DOMAINS,
    PROVIDER_DOMAINS,
    TYPO_DOMAINS,
)
from .errors import ConfigError

__all__ = [
    "DEFAULT_GREYLIST_SECONDS",
    "DEFAULT_LATE_DELAY",
    "DNS_MODES",
    "DOMAIN_OUTCOMES",
    "EXAMPLE_DOMAINS",
    "OUTCOMES",
    "PER_ADDRESS_OUTCOMES",
    "PER_ATTEMPT_OUTCOMES",
    "Domain",
    "Rule",
    "World",
    "normalize_address",
    "normalize_domain",
]

#: Outcomes decided once per address (the same on every attempt), in the order rates stack up.
PER_ADDRESS_OUTCOMES: tuple[str, ...] = (
    "user_unknown",
    "mailbox_full",
    "policy",
    "bounce_later",
    "complain_later",
    "auto_reply",
)
#: Outcomes decided per attempt ("now and then"): a retry usually gets through.
PER_ATTEMPT_OUTCOMES: tuple[str, ...] = ("tempfail", "drop_before_dot", "drop_after_dot")
#: Outcomes that come from the recipient domain's DNS rather than from the address.
DOMAIN_OUTCOMES: tuple[str, ...] = ("domain_not_found", "null_mx", "dns_failure")
#: Every outcome ``World.outcome`` can return, and every value ``World(addresses=...)`` takes.
OUTCOMES: tuple[str, ...] = (
    "accept",
    *PER_ADDRESS_OUTCOMES,
    "greylist",
    *PER_ATTEMPT_OUTCOMES,
    *DOMAIN_OUTCOMES,
)
#: How a domain's DNS answers: MX records, a null MX (RFC 7505), no such domain, or failing servers.
DNS_MODES: tuple[str, ...] = ("mx", "null_mx", "nxdomain", "timeout", "servfail")
DNSMode = Literal["mx", "null_mx", "nxdomain", "timeout", "servfail"]
#: Reserved example domains (RFC 2606) every world answers for, so tests can use them freely.
EXAMPLE_DOMAINS: tuple[str, ...] = ("example.com", "example.net", "example.org")
#: Greylisting window used for ``addresses={...: "greylist"}`` at a domain without its own window.
DEFAULT_GREYLIST_SECONDS = 1.0
#: Seconds (lowest, highest) between accepting a message and writing its late bounce or reply.
DEFAULT_LATE_DELAY: tuple[float, float] = (0.5, 3.0)


def normalize_domain(domain: str, /) -> str:
    """Lower-case ASCII (IDNA) form of a domain, without a trailing dot."""
    name = domain.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            pass  # not a valid IDN: keep it as given, it will simply not be found
    return name


def normalize_address(address: str, /) -> str:
    """The key the world knows an address by: lower case, domain in IDNA form."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.lower()}@{normalize_domain(domain)}"


def unit_hash(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on ``seed`` and ``parts`` (stable across runs)."""
    text = "\x1f".join([str(seed), *map(str, parts)])
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _check_rate(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{owner} {name} must be a share from 0 to 1; got {value!r}.")


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one scripted address does, optionally for its first ``times`` attempts only.

    An attempt is one ``RCPT TO`` for that address, on any connection. After ``times`` attempts
    the address accepts. ``"greylist"`` ends when its time window has passed, so it takes no
    ``times``.

    Example:
        >>> Rule("drop_before_dot", times=1)  # the first DATA is cut off, the retry goes through
        Rule(outcome='drop_before_dot', times=1)
    """

    outcome: str
    times: int | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ConfigError(
                f"Unknown sandbox outcome {self.outcome!r}; use one of {', '.join(OUTCOMES)}."
            )
        if self.times is not None:
            if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
                raise ConfigError(
                    f"Rule times must be a positive whole number of attempts; got {self.times!r}."
                )
            if self.outcome == "greylist":
                raise ConfigError(
                    "A greylisted address is let through by time (the domain's "
                    "greylist_seconds), not by a number of attempts; leave times out."
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Domain:
    """How the mail server of one simulated domain behaves.

    Shares (0 to 1) of addresses, decided per address and stacked in this order:
    ``user_unknown`` (550 5.1.1), ``mailbox_full`` (552 5.2.2), ``policy`` (554 5.7.1),
    ``bounce_later`` (250, then an RFC 3464 bounce), ``complain_later`` (250, then an RFC 5965
    complaint), ``auto_reply`` (250, then an RFC 3834 auto-reply).

    Shares of attempts ("now and then"): ``tempfail`` (451 4.3.0 at RCPT), ``drop_before_dot``
    (the connection is cut when DATA arrives, so the client never sent the final "."),
    ``drop_after_dot`` (the message is taken in full, then the connection is cut before the
    reply: the client cannot know it was delivered).

    Parameters:
        greylist_seconds: when above 0, the first attempt of a (sender, recipient) pair gets
            451 4.7.1 and so does every retry until this many seconds have passed.
        greylist_rate: the share of (sender, recipient) pairs that are greylisted.
        max_per_connection: after this many messages to the domain on one connection the next
            RCPT gets 421 4.7.0 and the connection is closed.
        max_per_window: more than this many messages to the domain within ``window_seconds``
            (all connections together) get 452 4.7.0 at RCPT.
        latency_ms: median delay before the reply to the final "."; ``latency_spread`` is the
            sigma of its log-normal distribution (0 for a fixed delay).
        dns: ``"mx"``, ``"null_mx"``, ``"nxdomain"``, ``"timeout"`` or ``"servfail"``.

    Example:
        >>> Domain(user_unknown=0.02, greylist_seconds=1.0, greylist_rate=0.2).user_unknown
        0.02
    """

    user_unknown: float = 0.0
    mailbox_full: float = 0.0
    policy: float = 0.0
    bounce_later: float = 0.0
    complain_later: float = 0.0
    auto_reply: float = 0.0
    tempfail: float = 0.0
    drop_before_dot: float = 0.0
    drop_after_dot: float = 0.0
    greylist_seconds: float = 0.0
    greylist_rate: float = 1.0
    max_per_connection: int | None = None
    max_per_window: int | None = None
    window_seconds: float = 60.0
    latency_ms: float = 0.0
    latency_spread: float = 0.0
    dns: DNSMode = "mx"

    def __post_init__(self) -> None:
        for name in (*PER_ADDRESS_OUTCOMES, *PER_ATTEMPT_OUTCOMES, "greylist_rate"):
            _check_rate("Domain", name, getattr(self, name))
        for group in (PER_ADDRESS_OUTCOMES, PER_ATTEMPT_OUTCOMES):
            total = sum(getattr(self, name) for name in group)
            if total > 1.0 + 1e-9:
                raise ConfigError(
                    f"The Domain shares {', '.join(group)} add up to {total:g}; together they "
                    "can be at most 1."
                )
        for name in ("greylist_seconds", "window_seconds", "latency_ms", "latency_spread"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"Domain {name} must be a number of at least 0; got {value!r}.")
        if self.window_seconds <= 0:
            raise ConfigError("Domain window_seconds must be above 0.")
        for name in ("max_per_connection", "max_per_window"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    f"Domain {name} must be a positive whole number or None; got {value!r}."
                )
        if self.dns not in DNS_MODES:
            raise ConfigError(
                f"Domain dns must be one of {', '.join(DNS_MODES)}; got {self.dns!r}."
            )


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class World:
    """The simulated internet behind a Sandbox: domains, scripted addresses, a seed.

    ``World()`` accepts every message for every domain. ``World.default()`` is the realistic mix
    the demo uses. Decisions depend only on the address, the attempt number and ``seed``.

    Parameters:
        domains: ``{domain: Domain(...)}``; names may be Unicode (IDN) or ASCII.
        addresses: ``{address: outcome}`` or ``{address: Rule(outcome, times=n)}``, overriding
            the domain's shares; outcomes are listed in ``OUTCOMES``.
        default_domain: the ``Domain`` behaviour of domains not listed in ``domains``.
        unknown_domains: ``"accept"`` (treat unlisted domains with ``default_domain``) or
            ``"reject"`` (550 5.1.2, and NXDOMAIN in the sandbox's DNS). The example domains
            and the domains of scripted addresses are always known.
        greeting_failure_rate: share of connections answered ``421`` at the greeting. (A
            server cannot know the recipient's domain before RCPT, so this is server-wide.)
        refuse_connections: connection numbers (1 = the first) answered ``421`` at the greeting.
        late_delay: (lowest, highest) seconds before a late bounce, complaint or auto-reply.

    Example:
        >>> world = World(domains={"example.com": Domain(user_unknown=1.0)}, seed=7)
        >>> world.outcome("anyone@example.com")
        'user_unknown'
    """

    domains: Mapping[str, Domain] = dataclasses.field(default_factory=dict)
    addresses: Mapping[str, str | Rule] = dataclasses.field(default_factory=dict)
    default_domain: Domain = dataclasses.field(default_factory=Domain)
    unknown_domains: Literal["accept", "reject"] = "accept"
    seed: int = 0
    greeting_failure_rate: float = 0.0
    refuse_connections: frozenset[int] = frozenset()
    late_delay: tuple[float, float] = DEFAULT_LATE_DELAY

    def __post_init__(self) -> None:
        domains: dict[str, Domain] = {}
        for name, policy in dict(self.domains).items():
            if not isinstance(policy, Domain):
                raise ConfigError(
                    f"World domains map a domain name to a Domain(...); {name!r} maps to "
                    f"{type(policy).__name__}."
                )
            domains[normalize_domain(name)] = policy
        rules: dict[str, Rule] = {}
        for address, rule in dict(self.addresses).items():
            if "@" not in address:
                raise ConfigError(
                    f"World addresses need full email addresses; {address!r} has no '@'."
                )
            rules[normalize_address(address)] = rule if isinstance(rule, Rule) else Rule(rule)
        object.__setattr__(self, "domains", types.MappingProxyType(domains))
        object.__setattr__(self, "addresses", types.MappingProxyType(rules))
        if not isinstance(self.default_domain, Domain):
            raise ConfigError("World default_domain must be a Domain(...).")
        if self.unknown_domains not in ("accept", "reject"):
            raise ConfigError(
                f"World unknown_domains must be 'accept' or 'reject'; got {self.unknown_domains!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"World seed must be an integer; got {self.seed!r}.")
        _check_rate("World", "greeting_failure_rate", self.greeting_failure_rate)
        object.__setattr__(self, "refuse_connections", frozenset(self.refuse_connections))
        try:
            low, high = (float(x) for x in self.late_delay)
        except (TypeError, ValueError):
            raise ConfigError(
                "World late_delay must be a pair of seconds (lowest, highest), such as (0.5, 3.0)."
            ) from None
        if not 0 <= low <= high:
            raise ConfigError(
                f"World late_delay must satisfy 0 <= lowest <= highest; got {self.late_delay!r}."
            )
        object.__setattr__(self, "late_delay", (low, high))

    @classmethod
    def default(cls, *, seed: int = 0) -> World:
        """A realistic world for the demo, tuned to ``data/contacts.csv`` (``smtpkit._sample``).

        Every provider, company, disposable and IDN domain of the sample contacts answers; the
        typo domains do not exist. About 2-3% of addresses are unknown users; gmail.com greylists
        a fifth of new (sender, recipient) pairs for one second; yahoo.com throttles (421 after
        25 messages on one connection, 452 beyond 120 messages in 5 s); roughly 1% of addresses
        bounce later, 0.3% complain and 0.5% send an auto-reply (more at companies, where people
        are out of the office); a few mailboxes are full and a few connections drop during DATA.
        ``nullmx.example`` has a null MX and ``dns-down.example`` has failing name servers.
        """
        provider = Domain(
            user_unknown=0.025,
            mailbox_full=0.004,
            policy=0.002,
            bounce_later=0.01,
            complain_later=0.003,
            auto_reply=0.004,
            tempfail=0.002,
            latency_ms=6.0,
            latency_spread=0.6,
        )
        domains: dict[str, Domain] = dict.fromkeys(PROVIDER_DOMAINS, provider)
        domains["gmail.com"] = dataclasses.replace(
            provider, user_unknown=0.02, greylist_seconds=1.0, greylist_rate=0.2, latency_ms=4.0
        )
        domains["yahoo.com"] = dataclasses.replace(
            provider,
            user_unknown=0.03,
            max_per_connection=25,
            max_per_window=120,
            window_seconds=5.0,
            latency_ms=12.0,
        )
        for name in ("outlook.com", "hotmail.com"):
            domains[name] = dataclasses.replace(provider, policy=0.006, latency_ms=9.0)
        company = Domain(
            user_unknown=0.03,
            mailbox_full=0.002,
            bounce_later=0.012,
            complain_later=0.002,
            auto_reply=0.008,
            drop_before_dot=0.003,
            drop_after_dot=0.0015,
            latency_ms=15.0,
            latency_spread=0.8,
        )
        domains.update(dict.fromkeys(COMPANY_DOMAINS, company))
        domains.update(dict.fromkeys(DISPOSABLE_DOMAINS, Domain(latency_ms=3.0)))
        domains.update(dict.fromkeys(IDN_DOMAINS, Domain(user_unknown=0.02, latency_ms=8.0)))
        domains.update(dict.fromkeys(TYPO_DOMAINS, Domain(dns="nxdomain")))
        domains["nullmx.example"] = Domain(dns="null_mx")
        domains["dns-down.example"] = Domain(dns="servfail")
        return cls(domains=domains, unknown_domains="reject", seed=seed, late_delay=(0.5, 3.0))

    # --- decisions --------------------------------------------------------------------------

    def policy_for(self, domain: str, /) -> Domain | None:
        """The ``Domain`` behaviour of ``domain``, or None when this world does not know it."""
        name = normalize_domain(domain)
        policy = self.domains.get(name)
        if policy is not None:
            return policy
        if self.unknown_domains == "accept" or name in self._implied_domains():
            return self.default_domain
        return None

    def outcome(self, address: str, /, *, attempt: int = 0) -> str:
        """What the domain's server does with ``address`` on its ``attempt``-th RCPT (from 0).

        Returns one of ``OUTCOMES``. Greylisting by a domain's ``greylist_rate``, throttling
        and the greeting are decided by the server (they depend on time and traffic).
        """
        key = normalize_address(address)
        domain = key.rpartition("@")[2]
        policy = self.policy_for(domain)
        if policy is None or policy.dns == "nxdomain":
            return "domain_not_found"
        if policy.dns == "null_mx":
            return "null_mx"
        if policy.dns in ("timeout", "servfail"):
            return "dns_failure"
        rule = self.addresses.get(key)
        if isinstance(rule, str):  # normalized to a Rule when built; kept for type checkers
            rule = Rule(rule)
        if rule is not None:
            if rule.times is None or attempt < rule.times:
                return rule.outcome
            return "accept"
        draw = unit_hash(self.seed, "address", key)
        for name in PER_ADDRESS_OUTCOMES:
            share = getattr(policy, name)
            if draw < share:
                return name
            draw -= share
        draw = unit_hash(self.seed, "attempt", key, attempt)
        for name in PER_ATTEMPT_OUTCOMES:
            share = getattr(policy, name)
            if draw < share:
                return name
            draw -= share
        return "accept"

    def greylist_seconds(self, sender: str, recipient: str, /, *, outcome: str = "accept") -> float:
        """Seconds the (sender, recipient) pair is greylisted for; 0 when it is not."""
        key = normalize_address(recipient)
        policy = self.policy_for(key.rpartition("@")[2]) or self.default_domain
        if outcome == "greylist":
            return policy.greylist_seconds or DEFAULT_GREYLIST_SECONDS
        if policy.greylist_seconds <= 0:
            return 0.0
        draw = unit_hash(self.seed, "greylist", normalize_address(sender), key)
        return policy.greylist_seconds if draw < policy.greylist_rate else 0.0

    def latency(self, address: str, /, *, attempt: int = 0) -> float:
        """Seconds the server waits before answering the final "." of a message to ``address``."""
        key = normalize_address(address)
        policy = self.policy_for(key.rpartition("@")[2])
        if policy is None or policy.latency_ms <= 0:
            return 0.0
        median = policy.latency_ms / 1000.0
        if policy.latency_spread <= 0:
            return median
        draw = min(max(unit_hash(self.seed, "latency", key, attempt), 1e-9), 1 - 1e-9)
        z = statistics.NormalDist().inv_cdf(draw)
        return min(median * math.exp(policy.latency_spread * z), median * 20)

    def late_delay_for(self, address: str, /) -> float:
        """Seconds between accepting a message to ``address`` and writing its late message."""
        low, high = self.late_delay
        return low + (high - low) * unit_hash(self.seed, "late", normalize_address(address))

    def late_failure(self, address: str, /) -> tuple[int, str, str]:
        """(reply code, enhanced status, text) of the late bounce for ``address``."""
        draw = unit_hash(self.seed, "dsn", normalize_address(address))
        if draw < 0.7:
            return 550, "5.1.1", "The email account that you tried to reach does not exist"
        if draw < 0.9:
            return 552, "5.2.2", "The recipient's mailbox is full and cannot accept messages now"
        return 554, "5.7.1", "The message was rejected by the recipient's spam filter"

    def refuses_greeting(self, connection: int, /) -> bool:
        """True when connection number ``connection`` (from 1) is answered 421 at the greeting."""
        if connection in self.refuse_connections:
            return True
        return unit_hash(self.seed, "greeting", connection) < self.greeting_failure_rate

    # --- DNS --------------------------------------------------------------------------------

    def _implied_domains(self) -> frozenset[str]:
        cached: frozenset[str] | None = self.__dict__.get("_implied")
        if cached is None:
            from_addresses = (key.rpartition("@")[2] for key in self.addresses)
            cached = frozenset((*EXAMPLE_DOMAINS, *from_addresses))
            object.__setattr__(self, "_implied", cached)
        return cached

    def known_domains(self) -> Iterator[tuple[str, Domain]]:
        """Every domain this world answers for, with its behaviour (IDNA form)."""
        for name in sorted(set(self.domains) | self._implied_domains()):
            yield name, self.domains.get(name, self.default_domain)

    def zone(self, address: str = "127.0.0.1", /) -> dict[str, Any]:
        """DNS records for ``smtpkit.dns.StaticBackend``; every MX host points at ``address``.

        Example:
            >>> World().zone()["example.com"]
            {'MX': ['10 mx1.example.com.']}
        """
        record = "AAAA" if ":" in address else "A"
        zone: dict[str, Any] = {}
        for name, policy in self.known_domains():
            if policy.dns == "mx":
                zone[name] = {"MX": [f"10 mx1.{name}."]}
                zone[f"mx1.{name}"] = {record: [address]}
            elif policy.dns == "null_mx":
                zone[name] = {"MX": ["0 ."]}
            elif policy.dns in ("timeout", "servfail"):
                zone[name] = policy.dns
        return zone

    def mx_hosts(self) -> list[str]:
        """The MX host names of every domain that has one (for the TLS certificate)."""
        return [f"mx1.{name}" for name, policy in self.known_domains() if policy.dns == "mx"]

    def __repr__(self) -> str:
        return (
            f"World(domains={len(self.domains)}, addresses={len(self.addresses)}, "
            f"unknown_domains={self.unknown_domains!r}, seed={self.seed})"
        )
