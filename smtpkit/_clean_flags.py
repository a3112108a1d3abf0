"""Flags for valid addresses: role accounts, disposable domains, typo suggestions.

Data sources:

* **Role accounts**: the mailbox names of RFC 2142 (as email-validator lists them in
  ``CASE_INSENSITIVE_MAILBOX_NAMES``) plus ``_COMMON_ROLE_NAMES``, names that stand for a team or
  a function rather than a person. A ``+tag`` is ignored (``info+news@`` is a role account).
* **Disposable domains**: the ``disposable-email-domains`` package (PyPI), the blocklist that the
  community project of the same name keeps current and that PyPI's own sign-up form uses; it is
  re-released whenever the list changes. A subdomain of a listed domain is disposable too.
* **Typo suggestions**: ``POPULAR_DOMAINS`` (big mailbox providers) and ``TLD_TYPOS`` (misspelt
  ``.com``/``.net``/``.org`` that are not real top-level domains). A domain one edit away
  (insert, delete, substitute, or swap two neighbours) from exactly one popular domain gets that
  domain as a suggestion; short provider names (fewer than 5 letters before the first dot, such as
  ``aol``/``gmx``) are too easy to hit by accident and are only used for TLD fixes. Anything
  ambiguous gets no suggestion.

Example:
    >>> is_role("Info+news"), is_role("jane")
    (True, False)
    >>> suggest_domain("gmial.com"), suggest_domain("gmail.con"), suggest_domain("acme.com")
    ('gmail.com', 'gmail.com', None)
"""

from __future__ import annotations

import functools

from email_validator import rfc_constants as _rfc

__all__ = [
    "POPULAR_DOMAINS",
    "ROLE_NAMES",
    "TLD_TYPOS",
    "disposable_domains",
    "is_disposable",
    "is_role",
    "suggest_domain",
]

_COMMON_ROLE_NAMES = frozenset(
    {
        "accounting", "accounts", "admin", "administrator", "admissions", "all", "billing",
        "booking", "bookings", "careers", "ceo", "compliance", "contact", "contactus",
        "customercare", "customerservice", "customer.service", "dev", "devnull", "donotreply",
        "do-not-reply", "enquiries", "enquiry", "everyone", "feedback", "finance", "hello",
        "help", "helpdesk", "hr", "inquiries", "inquiry", "investors", "it", "jobs", "legal",
        "list", "mail", "mailer-daemon", "media", "newsletter", "no-reply", "no_reply", "noreply",
        "office", "operations", "orders", "partners", "payments", "press", "privacy",
        "purchasing", "recruiting", "recruitment", "reception", "root", "service", "services",
        "staff", "sysadmin", "team", "tech", "unsubscribe", "welcome",
    }
)
#: Local parts (lower case, without ``+tag``) that name a role, not a person.
ROLE_NAMES: frozenset[str] = frozenset(_rfc.CASE_INSENSITIVE_MAILBOX_NAMES) | _COMMON_ROLE_NAMES

#: Big mailbox providers: the targets of typo suggestions.
POPULAR_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.co.jp", "yahoo.fr",
        "yahoo.de", "yahoo.es", "yahoo.it", "yahoo.ca", "yahoo.com.br", "ymail.com",
        "rocketmail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de",
        "hotmail.it", "hotmail.es", "outlook.com", "outlook.de", "outlook.fr", "live.com",
        "live.co.uk", "live.fr", "msn.com", "icloud.com", "me.com", "mac.com", "aol.com",
        "gmx.de", "gmx.net", "gmx.com", "gmx.at", "web.de", "t-online.de", "freenet.de",
        "orange.fr", "wanadoo.fr", "free.fr", "laposte.net", "sfr.fr", "libero.it",
        "virgilio.it", "alice.it", "tiscali.it", "mail.ru", "yandex.ru", "rambler.ru",
        "protonmail.com", "proton.me", "pm.me", "tutanota.com", "fastmail.com", "zoho.com",
        "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net", "cox.net",
        "charter.net", "btinternet.com", "sky.com", "virginmedia.com", "ntlworld.com",
        "bigpond.com", "optusnet.com.au", "shaw.ca", "rogers.com", "sympatico.ca", "qq.com",
        "163.com", "126.com", "naver.com", "hanmail.net", "rediffmail.com", "uol.com.br",
        "bol.com.br", "terra.com.br", "telenet.be", "skynet.be", "ziggo.nl", "planet.nl",
        "home.nl", "bluewin.ch", "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "onet.pl",
    }
)
#: Misspelt generic top-level domains that do not exist, and the one meant.
TLD_TYPOS: dict[str, str] = {
    "con": "com", "cmo": "com", "ocm": "com", "comm": "com", "coom": "com", "cpm": "com",
    "vom": "com", "xom": "com", "clm": "com", "cim": "com", "copm": "com", "comn": "com",
    "nte": "net", "nett": "net", "ner": "net", "ogr": "org", "orgg": "org", "prg": "org",
}
_MIN_FUZZY_LABEL = 5


def is_role(local_part: str, /) -> bool:
    """True when ``local_part`` (any case, ``+tag`` ignored) names a role, not a person."""
    return local_part.lower().partition("+")[0] in ROLE_NAMES


@functools.cache
def disposable_domains() -> frozenset[str]:
    """The blocklist of the ``disposable-email-domains`` package (ASCII, lower case)."""
    from disposable_email_domains import blocklist

    return frozenset(blocklist)


def is_disposable(ascii_domain: str, /) -> bool:
    """True when the domain or a parent of it is on the disposable-domain blocklist."""
    listed = disposable_domains()
    labels = ascii_domain.lower().split(".")
    return any(".".join(labels[i:]) in listed for i in range(len(labels) - 1))


_DOMAIN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-."


def _one_edit_variants(word: str) -> set[str]:
    """Every string one insert, delete, substitution or swap of neighbours away from ``word``."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    variants = {a + b[1:] for a, b in splits if b}
    variants |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    variants |= {a + c + b[1:] for a, b in splits if b for c in _DOMAIN_CHARS}
    variants |= {a + c + b for a, b in splits for c in _DOMAIN_CHARS}
    variants.discard(word)
    return variants


@functools.cache
def _typo_table() -> dict[str, str | None]:
    """Misspelling -> the popular domain it is one edit from (None when it is near several)."""
    table: dict[str, str | None] = {}
    for domain in sorted(POPULAR_DOMAINS):
        if len(domain.partition(".")[0]) < _MIN_FUZZY_LABEL:
            continue
        for variant in _one_edit_variants(domain):
            table[variant] = domain if table.get(variant, domain) == domain else None
    for domain in POPULAR_DOMAINS:
        table.pop(domain, None)
    return table


def suggest_domain(ascii_domain: str, /) -> str | None:
    """The popular or TLD-fixed domain this one is probably a typo of, or None when unsure."""
    domain = ascii_domain.lower()
    if domain in POPULAR_DOMAINS:
        return None
    head, _, tld = domain.rpartition(".")
    if head and tld in TLD_TYPOS:
        fixed = f"{head}.{TLD_TYPOS[tld]}"
        return _fuzzy(fixed) or fixed
    # No exception for listed disposable domains: typo domains of big providers (gmial.com ...)
    # are often registered by throwaway services, and are still typos.
    return _fuzzy(domain)


def _fuzzy(domain: str) -> str | None:
    if domain in POPULAR_DOMAINS:
        return domain
    return _typo_table().get(domain)
