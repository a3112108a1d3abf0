"""Write data/contacts.csv: a seeded, realistic CRM export (about 5,000 rows) with real-world mess.

Run ``python data/make_contacts.py`` to regenerate it; the same seed gives the same file.

Columns: contact_id, first_name, last_name, email, company, country, plan (free/pro/enterprise),
signup_date, language, opt_in.

The mix in the ``email`` column (shares of the rows), which tests and notebooks rely on:
  ~80%  clean addresses at big providers and company domains (a few in upper case)
    8%  deliberate duplicates of an earlier row differing only in case and surrounding whitespace
        (common names repeat too, so about 16% of rows are duplicates in all)
    3%  "Jane Doe <jane@x.com>" forms; 1% "mailto:" prefixes or surrounding quotes
  1.5%  typo domains: gmial.com, hotmial.com, yaho.com, gmail.con, outlok.com
    2%  role accounts (info@, sales@, support@, admin@, ...)
    1%  disposable domains (mailinator.com, guerrillamail.com, 10minutemail.com, ...)
    2%  invalid syntax (no @, two @, double dots, spaces, trailing dot, ...)
  0.6%  internationalized addresses (IDN domains such as bücher.example.de, non-ASCII local parts)
    1%  blank cells; 3 rows with a control character (CR/LF or TAB) inside the address
With this seed, smtpkit.clean finds 784 duplicates, 100 role accounts, 73 disposable addresses
(the blocklist also lists the typo domains gmial.com and hotmial.com),
75 typo suggestions, 153 invalid or blank cells and 4,063 sendable rows.
The generator lives in smtpkit/_sample.py, so `smtpkit demo` can rebuild the list anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smtpkit._sample import DEFAULT_SEED, make_contacts


def main() -> None:
    out = Path(__file__).resolve().parent / "contacts.csv"
    frame = make_contacts(5000, seed=DEFAULT_SEED)
    frame.to_csv(out, index=False)
    print(f"wrote {len(frame):,} rows to {out}")


if __name__ == "__main__":
    main()
