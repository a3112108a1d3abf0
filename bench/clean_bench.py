"""Benchmark: ``smtpkit.clean`` against the naive per-row email-validator loop, side by side.

Builds a seeded, realistic list (default 1,000,000 rows: ~15% duplicates, ~3% invalid, ~1%
internationalized, ~1% role accounts, ~0.5% disposable, ~0.5% typo domains), then in one run:

1. times ``clean(frame)`` (best of ``--repeat`` runs, after a warm-up on 10,000 rows);
2. times the naive loop ``frame["email"].apply(naive)``, where ``naive`` is a try/except around
   ``validate_email(cell.strip(), check_deliverability=False)``, over every row;
3. checks that every verdict and every normalized address agree;
4. measures clean's peak RSS in a fresh subprocess (so the naive run does not pollute it): the
   list is built, the kernel's peak mark is reset (``/proc/self/clear_refs``), ``clean`` runs
   once, and ``VmHWM`` is the peak. That first call in a fresh process also shows the cold time.

Run: ``.venv/bin/python bench/clean_bench.py`` (about a minute and a half on 2 cores) or
``--rows 100000`` for a quick look. Prints rows/s, the ratio and peak memory; exits 1 when a
verdict disagrees.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
from typing import Any

import pandas as pd

SEED = 20261128

_FIRST = ["james", "mary", "robert", "patricia", "michael", "linda", "david", "emily", "john",
          "jessica", "chris", "ashley", "daniel", "sarah", "kevin", "megan", "oliver", "amelia",
          "harry", "isla", "lukas", "anna", "felix", "lena", "louis", "chloe", "hugo", "lea",
          "pablo", "sofia", "haruto", "yui", "miguel", "alice", "arthur", "helena", "noah",
          "liam", "emma", "olivia", "ava", "mia", "ethan", "lucas", "mason", "zoe", "ivan"]
_LAST = ["smith", "johnson", "williams", "brown", "jones", "miller", "davis", "wilson",
         "anderson", "taylor", "thomas", "moore", "martin", "lee", "clark", "lewis", "evans",
         "hughes", "roberts", "walker", "mueller", "schmidt", "schneider", "fischer", "weber",
         "dubois", "bernard", "garcia", "fernandez", "lopez", "sato", "suzuki", "tanaka",
         "silva", "santos", "oliveira", "kowalski", "novak", "jensen", "hansen", "rossi"]
_PROVIDERS = {"gmail.com": 30, "yahoo.com": 8, "outlook.com": 6, "hotmail.com": 6,
              "icloud.com": 4, "aol.com": 2, "gmx.de": 3, "web.de": 2, "orange.fr": 2,
              "libero.it": 1, "yahoo.co.jp": 1, "comcast.net": 1, "btinternet.com": 1}
_TLDS = ["com", "com", "com", "io", "de", "co.uk", "fr", "net", "org", "nl", "es", "ch", "se"]
_WORDS = ["acme", "blue", "peak", "bright", "water", "cobalt", "copper", "leaf", "drift", "wood",
          "ever", "green", "fjord", "granite", "harbor", "view", "helios", "iron", "bark",
          "juniper", "kestrel", "lumen", "maple", "crest", "meridian", "north", "wind", "oak",
          "ridge", "orbit", "wave", "pine", "cone", "quartz", "red", "fern", "salt", "marsh",
          "silver", "line", "sol", "stone", "bridge", "tide", "umbra", "vantage", "willow",
          "zenith", "nova", "terra", "polar", "delta", "vertex", "atlas", "summit", "river"]
_IDN_DOMAINS = ["bücher.example.de", "münchen-post.de", "例え.jp", "παράδειγμα.gr",
                "пример.рф", "café-paris.fr", "straße-bau.de", "köln-media.de", "österreich.at",
                "søndergaard.dk", "ñandú.es", "göteborg-it.se", "zürich-bank.ch", "日本語.jp"]
_INTL_LOCALS = ["josé", "zoë", "müller", "søren", "ángel", "用户", "françois", "björn", "łukasz",
                "ana.maría", "иван", "δημήτρης", "chloé", "jürgen", "niño"]
_ROLES = ["info", "sales", "support", "admin", "contact", "office", "billing", "noreply",
          "marketing", "hello", "postmaster", "webmaster", "hr", "jobs"]
_TYPOS = ["gmial.com", "hotmial.com", "yaho.com", "gmail.con", "outlok.com", "gamil.com",
          "gmai.com", "yahoo.con", "hotmail.co", "icloud.con"]
_INVALID = ("{f}.{l}{d}", "{f}@@{d}", "{f}..{l}@{d}", "{f} {l}@{d}", "{f}.{l}@{d}.", ".{f}@{d}",
            "{f}@", "@{d}", "{f}@{dn}", "{f}@-{d}", "{f}(at){d}", "{f}@{d},{l}@{d}",
            "{f}.@{d}", "{f}@{d}..com", "{f}[{l}]@{d}", "{f}@{dn}.local")


def build_list(n: int, seed: int = SEED) -> pd.DataFrame:
    """A seeded contact list of ``n`` rows with the mix described in the module docstring."""
    from disposable_email_domains import blocklist

    rng = random.Random(seed)
    disposable = sorted(blocklist)
    disposable = [rng.choice(disposable) for _ in range(300)]
    companies = sorted({
        f"{rng.choice(_WORDS)}{rng.choice(['', '-'])}{rng.choice(_WORDS)}.{rng.choice(_TLDS)}"
        for _ in range(20_000)
    })
    providers = list(_PROVIDERS)
    weights = list(_PROVIDERS.values())

    def local() -> str:
        # Names plus a number, so that different people rarely collide (~1% of rows do, as in
        # real lists); the planned duplicates are added below.
        f, last = rng.choice(_FIRST), rng.choice(_LAST)
        number = rng.randint(1, 99_999)
        style = rng.random()
        if style < 0.35:
            return f"{f}.{last}{number}"
        if style < 0.55:
            return f"{f[0]}{last}{number}"
        if style < 0.75:
            return f"{f}{last}{number}"
        if style < 0.85:
            return f"{f}_{last}{number}"
        if style < 0.95:
            return f"{last}.{f}{number}"
        return f"{f}.{last}+news{number}"

    def domain() -> str:
        if rng.random() < 0.35:
            return rng.choice(companies)
        return rng.choices(providers, weights)[0]

    n_dupes = int(n * 0.15)
    base = n - n_dupes
    rows: list[str] = []
    clean_positions: list[int] = []
    for _ in range(base):
        kind = rng.random()
        if kind < 0.03:
            d = domain()
            rows.append(rng.choice(_INVALID).format(
                f=rng.choice(_FIRST), l=rng.choice(_LAST), d=d, dn=d.split(".")[0]))
        elif kind < 0.04:
            if rng.random() < 0.5:
                rows.append(f"{local()}@{rng.choice(_IDN_DOMAINS)}")
            else:
                rows.append(f"{rng.choice(_INTL_LOCALS)}{rng.randint(1, 9999)}@{domain()}")
        elif kind < 0.05:
            rows.append(f"{rng.choice(_ROLES)}@{rng.choice(companies)}")
        elif kind < 0.055:
            rows.append(f"{local()}@{rng.choice(disposable)}")
        elif kind < 0.06:
            rows.append(f"{local()}@{rng.choice(_TYPOS)}")
        else:
            address = f"{local()}@{domain()}"
            if rng.random() < 0.03:
                address = address.capitalize()
            clean_positions.append(len(rows))
            rows.append(address)
    for _ in range(n_dupes):
        address = rows[rng.choice(clean_positions)]
        choice = rng.random()
        if choice < 0.3:
            address = address.upper()
        elif choice < 0.45:
            local_part, _, dom = address.partition("@")
            address = f"{local_part.capitalize()}@{dom.upper()}"
        elif choice < 0.6:
            address = f" {address} "
        rows.append(address)
    rng.shuffle(rows)
    return pd.DataFrame({"contact_id": [f"C{i:07d}" for i in range(n)], "email": rows})


def naive_validate(cell: Any) -> str | None:
    """The per-row baseline: email-validator on the stripped cell; normalized form or None."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(cell.strip(), check_deliverability=False).normalized
    except (EmailNotValidError, AttributeError, TypeError):
        return None


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(rows: int) -> None:
    """Build the list, reset the peak-RSS mark, run clean once, print the memory as JSON."""
    from smtpkit import clean

    frame = build_list(rows)
    gc.collect()
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset VmHWM to the current RSS, so the peak below is clean()'s
    start = time.perf_counter()
    clean(frame)
    elapsed = time.perf_counter() - start
    print(json.dumps({"before_mb": before, "peak_mb": _rss_mb("VmHWM"), "seconds": elapsed}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="clean() runs; the best counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows)
        return 0

    from smtpkit import clean

    t0 = time.perf_counter()
    frame = build_list(args.rows)
    print(f"built {len(frame):,} rows in {time.perf_counter() - t0:.1f} s "
          f"({frame['email'].nunique():,} distinct cells)")
    clean(frame.head(10_000))  # warm-up: imports, regex compilation, the disposable list

    times = []
    result = None
    for _ in range(max(1, args.repeat)):
        gc.collect()
        start = time.perf_counter()
        result = clean(frame)
        times.append(time.perf_counter() - start)
    assert result is not None
    fast = min(times)

    start = time.perf_counter()
    reference = frame["email"].apply(naive_validate)
    slow = time.perf_counter() - start

    ref_valid = reference.notna().to_numpy()
    got_valid = result["valid"].to_numpy(dtype=bool)
    verdict_mismatch = int((ref_valid != got_valid).sum())
    both = ref_valid & got_valid
    norm_mismatch = int(
        (reference[both].astype("string") != result["email_normalized"][both]).sum()
    )

    proc = subprocess.run(
        [sys.executable, __file__, "--child", "--rows", str(args.rows)],
        capture_output=True, text=True, check=True,
    )
    memory = json.loads(proc.stdout.strip().splitlines()[-1])

    n = len(frame)
    counts = result["reason"].value_counts()
    print(f"reasons: {', '.join(f'{k}={v:,}' for k, v in counts.items())}")
    print(f"flags: role={int(result['role'].sum()):,}"
          f" disposable={int(result['disposable'].sum()):,}"
          f" suggestion={int(result['suggestion'].notna().sum()):,}"
          f" smtputf8={int(result['smtputf8'].sum()):,}")
    print(f"clean():      {fast:7.2f} s  {n / fast:12,.0f} rows/s  (runs: "
          f"{', '.join(f'{t:.2f}' for t in times)})")
    print(f"naive apply:  {slow:7.2f} s  {n / slow:12,.0f} rows/s")
    print(f"ratio:        {slow / fast:7.1f}x  (target >= 20x)")
    print(f"peak RSS of a fresh process during clean(): {memory['peak_mb']:,.0f} MB "
          f"(the process held {memory['before_mb']:,.0f} MB with the list built; "
          f"target <= 1,536 MB; that run took {memory['seconds']:.2f} s)")
    print(f"agreement: {n - verdict_mismatch:,}/{n:,} verdicts, "
          f"{int(both.sum()) - norm_mismatch:,}/{int(both.sum()):,} normalized forms")
    if verdict_mismatch or norm_mismatch:
        print("MISMATCH: clean() and email-validator disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
