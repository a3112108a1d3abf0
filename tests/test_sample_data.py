"""data/contacts.csv is what its seeded generator makes, and has the mix its header documents."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

import smtpkit
from smtpkit._sample import DEFAULT_SEED, make_contacts

CSV = Path(__file__).resolve().parent.parent / "data" / "contacts.csv"


@pytest.fixture(scope="module")
def cleaned() -> pd.DataFrame:
    return smtpkit.clean(smtpkit.load_contacts(CSV))


def test_csv_is_reproduced_by_the_generator() -> None:
    on_disk = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    made = pd.read_csv(
        io.StringIO(make_contacts(5000, seed=DEFAULT_SEED).to_csv(index=False)),
        dtype=str,
        keep_default_na=False,
    )
    pd.testing.assert_frame_equal(on_disk, made)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a, b = make_contacts(300, seed=1), make_contacts(300, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not make_contacts(300, seed=2)["email"].equals(a["email"])


def test_documented_mix(cleaned: pd.DataFrame) -> None:
    # The numbers stated in data/make_contacts.py and smtpkit/_sample.py.
    assert len(cleaned) == 5000
    assert int(cleaned["duplicate"].sum()) == 784
    assert int(cleaned["role"].sum()) == 100
    assert int(cleaned["disposable"].sum()) == 73
    assert int(cleaned["suggestion"].notna().sum()) == 75
    assert int((~cleaned["valid"]).sum()) == 153
    assert int(cleaned["sendable"].sum()) == 4063


def test_every_kind_of_mess_is_present() -> None:
    raw = pd.read_csv(CSV, dtype=str, keep_default_na=False)["email"]
    assert raw.str.contains("<", regex=False).sum() >= 100  # Jane Doe <jane@x.com>
    assert raw.str.startswith("mailto:").sum() >= 5
    assert raw.str.strip().eq("").sum() >= 40
    for typo in ("gmial.com", "hotmial.com", "yaho.com", "gmail.con", "outlok.com"):
        assert raw.str.endswith("@" + typo).any(), typo
    assert raw.str.contains(r"[\r\n\t]", regex=True).sum() >= 3
    assert raw.map(lambda s: not s.isascii()).sum() >= 20
    assert (raw != raw.str.strip()).sum() >= 100
