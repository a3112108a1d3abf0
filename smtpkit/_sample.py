"""A seeded, realistic CRM contact export with the mess real lists have.

``make_contacts(n, seed=...)`` returns the frame written to ``data/contacts.csv`` by
``data/make_contacts.py``; ``smtpkit demo`` calls it when that file is not at hand. The same seed
gives the same rows on every machine. The domain lists below are also the "internet" of the
Sandbox's default world, so the demo campaign reaches every domain a contact can have.

The mix (shares of the rows, before shuffling), which tests and notebooks may rely on:

* ~80% clean addresses at big providers (gmail.com, yahoo.com, outlook.com, ...) and at
  company domains; a few of the clean ones are written with upper-case letters;
* 8% deliberate duplicates of an earlier row, differing only in letter case and surrounding
  whitespace; common names repeat too (first.last@gmail.com), so about 16% of rows are
  duplicates in all;
* 3% ``Jane Doe <jane@x.com>`` forms, 1% ``mailto:`` prefixes or surrounding quotes;
* 1.5% typo domains (gmial.com, hotmial.com, yaho.com, gmail.con, outlok.com);
* 2% role accounts (info@, sales@, support@, ...), 1% disposable domains (mailinator.com, ...);
* 2% invalid syntax (no @, two @, double dots, spaces, trailing dots, ...);
* 0.6% internationalized addresses (IDN domains such as bücher.example.de, non-ASCII local parts);
* 1% blank cells, and 3 rows whose address holds a control character (CR, LF or TAB).

With the default seed and 5,000 rows, ``smtpkit.clean`` finds 784 duplicates, 100 role accounts,
73 disposable addresses (the blocklist also lists the typo domains gmial.com and hotmial.com),
75 typo suggestions, 153 invalid or blank cells and 4,063 sendable rows.

Example:
    >>> frame = make_contacts(200, seed=7)
    >>> list(frame.columns)[:4]
    ['contact_id', 'first_name', 'last_name', 'email']
    >>> len(frame)
    200
"""

from __future__ import annotations

import datetime as _dt
import random

import pandas as pd

__all__ = [
    "COMPANY_DOMAINS",
    "DEFAULT_SEED",
    "DISPOSABLE_DOMAINS",
    "IDN_DOMAINS",
    "PROVIDER_DOMAINS",
    "TYPO_DOMAINS",
    "make_contacts",
]

DEFAULT_SEED = 20261128

#: Big mailbox providers with their share among clean addresses.
PROVIDER_DOMAINS: dict[str, float] = {
    "gmail.com": 0.30,
    "yahoo.com": 0.08,
    "outlook.com": 0.06,
    "hotmail.com": 0.06,
    "icloud.com": 0.04,
    "aol.com": 0.02,
    "gmx.de": 0.03,
    "web.de": 0.02,
    "orange.fr": 0.02,
    "libero.it": 0.01,
    "yahoo.co.jp": 0.01,
}
#: Company domains (B2B contacts); together ~35% of clean addresses.
COMPANY_DOMAINS: tuple[str, ...] = (
    "acme-logistics.com", "bluepeak-analytics.io", "brightwater.co.uk", "cobalt-systems.net",
    "copperleaf.de", "driftwood-labs.com", "evergreen-health.org", "fjordline-shipping.no",
    "granite-capital.com", "harborview.fr", "helios-energy.es", "ironbark.com.au",
    "juniper-retail.com", "kestrel-aero.com", "lumen-media.com", "maplecrest.ca",
    "meridian-pharma.ch", "northwind-traders.com", "oakridge-consulting.com", "orbitwave.io",
    "pinecone-software.com", "quartz-legal.co.uk", "redfern-foods.com", "saltmarsh.nl",
    "silverline-bank.com", "solstice-travel.com", "stonebridge-edu.org", "tidewater-ins.com",
    "umbra-games.com", "vantage-motors.de", "willow-design.se", "zenith-robotics.jp",
)
#: Throwaway-mailbox services (all in the disposable-email-domains blocklist).
DISPOSABLE_DOMAINS: tuple[str, ...] = (
    "mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "trashmail.com",
)
#: Misspelt provider domains, each with the domain it should have been.
TYPO_DOMAINS: dict[str, str] = {
    "gmial.com": "gmail.com",
    "hotmial.com": "hotmail.com",
    "yaho.com": "yahoo.com",
    "gmail.con": "gmail.com",
    "outlok.com": "outlook.com",
}
#: Internationalized domains (Unicode form) used by a few contacts.
IDN_DOMAINS: tuple[str, ...] = ("bücher.example.de", "münchen-post.de", "例え.jp")

_ROLE_LOCALS = ("info", "sales", "support", "admin", "contact", "office", "billing", "noreply")
_INTL_LOCALS = ("josé", "zoë", "müller", "søren", "ángel", "用户")
_INVALID = (
    "{f}.{l}{d}",  # no @
    "{f}@@{d}",
    "{f}..{l}@{d}",
    "{f} {l}@{d}",
    "{f}.{l}@{d}.",
    ".{f}@{d}",
    "{f}@",
    "@{d}",
    "{f}@{d_nodot}",
    "{f}@-{d}",
    "{f}(at){d}",
    "{f}@{d},{l}@{d}",
)

_COUNTRIES = {
    "US": ("en", ["James", "Mary", "Robert", "Patricia", "Michael", "Linda", "David", "Emily",
                  "John", "Jessica", "Chris", "Ashley", "Daniel", "Sarah", "Kevin", "Megan"],
           ["Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
            "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Lee", "Clark", "Lewis"]),
    "GB": ("en", ["Oliver", "Amelia", "Harry", "Isla", "George", "Ava", "Jack", "Freya"],
           ["Evans", "Hughes", "Roberts", "Walker", "Wright", "Green", "Hall", "Wood"]),
    "DE": ("de", ["Lukas", "Anna", "Felix", "Lena", "Jonas", "Marie", "Paul", "Sophie"],
           ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"]),
    "FR": ("fr", ["Louis", "Chloé", "Hugo", "Léa", "Jules", "Manon", "Arthur", "Camille"],
           ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"]),
    "ES": ("es", ["Hugo", "Lucía", "Martín", "Sofía", "Pablo", "Martina", "Álvaro", "Paula"],
           ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez"]),
    "JP": ("ja", ["Haruto", "Yui", "Sota", "Hina", "Yuto", "Aoi", "Riku", "Mei"],
           ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto"]),
    "BR": ("pt", ["Miguel", "Alice", "Arthur", "Helena", "Heitor", "Laura", "Davi", "Valentina"],
           ["Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves"]),
}
_COUNTRY_WEIGHTS = {"US": 0.40, "GB": 0.12, "DE": 0.15, "FR": 0.10, "ES": 0.08, "JP": 0.07,
                    "BR": 0.08}
_COMPANIES = ("Acme", "Bluepeak", "Cobalt", "Copperleaf", "Driftwood", "Evergreen", "Granite",
              "Helios", "Juniper", "Kestrel", "Lumen", "Meridian", "Northwind", "Orbitwave",
              "Pinecone", "Quartz", "Redfern", "Silverline", "Stonebridge", "Vantage", "Zenith")


def _ascii_fold(text: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return folded.lower() or "x"


def _local_part(rng: random.Random, first: str, last: str) -> str:
    f, lname = _ascii_fold(first), _ascii_fold(last)
    style = rng.random()
    if style < 0.35:
        return f"{f}.{lname}"
    if style < 0.55:
        return f"{f[0]}{lname}"
    if style < 0.70:
        return f"{f}{lname}{rng.randint(1, 99)}"
    if style < 0.80:
        return f"{f}_{lname}"
    if style < 0.90:
        return f"{lname}.{f}"
    return f"{f}+news"


def make_contacts(n: int = 5000, /, *, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """A seeded contact export of ``n`` rows (see the module docstring for the mix)."""
    rng = random.Random(seed)
    countries = list(_COUNTRY_WEIGHTS)
    country_w = list(_COUNTRY_WEIGHTS.values())
    providers = list(PROVIDER_DOMAINS)
    provider_w = list(PROVIDER_DOMAINS.values())
    start = _dt.date(2019, 1, 1)

    rows: list[dict[str, object]] = []
    n_dupes = round(n * 0.08)
    base_n = n - n_dupes
    special = (
        ["typo"] * round(n * 0.015)
        + ["role"] * round(n * 0.02)
        + ["disposable"] * round(n * 0.01)
        + ["invalid"] * round(n * 0.02)
        + ["intl"] * round(n * 0.006)
        + ["blank"] * round(n * 0.01)
        + ["control"] * 3
        + ["display"] * round(n * 0.03)
        + ["mailto"] * round(n * 0.01)
    )
    kinds = special + ["clean"] * max(0, base_n - len(special))
    rng.shuffle(kinds)
    kinds = kinds[:base_n]

    for kind in kinds:
        country = rng.choices(countries, country_w)[0]
        language, firsts, lasts = _COUNTRIES[country]
        first, last = rng.choice(firsts), rng.choice(lasts)
        plan = rng.choices(["free", "pro", "enterprise"], [0.70, 0.24, 0.06])[0]
        b2b = rng.random() < 0.35 or plan == "enterprise"
        domain = rng.choice(COMPANY_DOMAINS) if b2b else rng.choices(providers, provider_w)[0]
        company = rng.choice(_COMPANIES) + " " + rng.choice(["Inc.", "GmbH", "Ltd", "SA", "Co."])
        local = _local_part(rng, first, last)
        email: str | None = f"{local}@{domain}"
        if kind == "clean" and rng.random() < 0.05:
            email = f"{local.capitalize()}@{domain.upper() if rng.random() < 0.3 else domain}"
        elif kind == "typo":
            email = f"{local}@{rng.choice(list(TYPO_DOMAINS))}"
        elif kind == "role":
            email = f"{rng.choice(_ROLE_LOCALS)}@{rng.choice(COMPANY_DOMAINS)}"
        elif kind == "disposable":
            email = f"{local}{rng.randint(1, 999)}@{rng.choice(DISPOSABLE_DOMAINS)}"
        elif kind == "invalid":
            pattern = rng.choice(_INVALID)
            email = pattern.format(
                f=_ascii_fold(first), l=_ascii_fold(last), d=domain, d_nodot=domain.split(".")[0]
            )
        elif kind == "intl":
            if rng.random() < 0.5:
                email = f"{local}@{rng.choice(IDN_DOMAINS)}"
            else:
                email = f"{rng.choice(_INTL_LOCALS)}{rng.randint(1, 99)}@{domain}"
        elif kind == "blank":
            email = rng.choice(["", "   ", None])
        elif kind == "control":
            email = local + rng.choice(["\r\n", "\n", "\t"]) + "@" + domain
        elif kind == "display":
            email = f"{first} {last} <{email}>"
        elif kind == "mailto":
            email = rng.choice([f"mailto:{email}", f'"{email}"', f"'{email}'"])
        signup = start + _dt.timedelta(days=rng.randint(0, 7 * 365 - 60))
        rows.append(
            {
                "first_name": first,
                "last_name": last,
                "email": email,
                "company": company if b2b else None,
                "country": country,
                "plan": plan,
                "signup_date": signup.isoformat(),
                "language": language,
                "opt_in": rng.random() < 0.92,
            }
        )

    clean_rows = [r for r, k in zip(rows, kinds, strict=True) if k == "clean"]
    for _ in range(n_dupes):
        original = rng.choice(clean_rows)
        variant = dict(original)
        address = str(original["email"])
        choice = rng.random()
        if choice < 0.4:
            address = address.upper()
        elif choice < 0.7:
            local, _, dom = address.partition("@")
            address = f"{local.capitalize()}@{dom.upper()}"
        address = rng.choice(["", " ", "  ", "\t"]) + address + rng.choice(["", " ", "  "])
        variant["email"] = address
        rows.append(variant)

    rng.shuffle(rows)
    frame = pd.DataFrame(rows)
    frame.insert(0, "contact_id", [f"C{100000 + i}" for i in range(len(frame))])
    return frame
