"""load_contacts: real CSV / Excel / Parquet files, encodings, column finding, clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from smtpkit import clean, load_contacts
from smtpkit._sample import make_contacts
from smtpkit.contacts import decode_text, find_email_column
from smtpkit.errors import InputError, MissingColumnError

ROOT = Path(__file__).resolve().parent.parent


def test_csv_keeps_every_row_as_text(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "id,email,zip,phone\n"
        "007,ann@example.com,01234,+4930123\n"
        "008,NA,,\n"
        "009,,NULL,n/a\n"
        '010,"Doe, Jane <jane@example.com>",99999,1\n',
        encoding="utf-8",
    )
    frame = load_contacts(path)
    assert frame["email"].tolist() == ["ann@example.com", "NA", "", "Doe, Jane <jane@example.com>"]
    assert frame["id"].tolist() == ["007", "008", "009", "010"]
    assert frame["zip"].tolist() == ["01234", "", "NULL", "99999"]
    assert frame["source_row"].tolist() == [1, 2, 3, 4]
    assert frame.attrs["smtpkit_email_column"] == "email"
    out = clean(frame)
    assert out["reason"].tolist() == ["ok", "no_at_sign", "blank", "ok"]


def test_sample_csv_round_trip(tmp_path: Path) -> None:
    sample = make_contacts(500, seed=3)
    path = tmp_path / "contacts.csv"
    sample.to_csv(path, index=False)
    frame = load_contacts(str(path))
    assert len(frame) == 500
    assert frame["contact_id"].tolist() == sample["contact_id"].tolist()
    out = clean(frame)
    assert len(out) == 500 and (out["reason"] == "control_characters").sum() == 3


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        pytest.param("name;E-Mail\nAnn;ann@example.com\n", ";", id="semicolon"),
        pytest.param("name\tE-Mail\nAnn\tann@example.com\n", "\t", id="tab"),
        pytest.param("name|E-Mail\nAnn|ann@example.com\n", "|", id="pipe"),
    ],
)
def test_delimiters_are_sniffed(text: str, delimiter: str) -> None:
    frame = load_contacts(io.StringIO(text))
    assert list(frame.columns) == ["source_row", "name", "E-Mail"]
    assert frame["E-Mail"].tolist() == ["ann@example.com"]


def test_mixed_encodings_in_one_file(tmp_path: Path) -> None:
    data = (
        "\ufeffname,email\n".encode()
        + "José,josé@example.com\n".encode()
        + "Zoë,zoë@example.com\n".encode("cp1252")
        + "Søren,søren@example.com\n".encode("latin-1")
        + "€uro,euro@example.com\n".encode("cp1252")
    )
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    frame = load_contacts(path)
    assert list(frame.columns) == ["source_row", "name", "email"]  # the BOM is gone
    assert frame["name"].tolist() == ["José", "Zoë", "Søren", "€uro"]
    assert clean(frame)["email_normalized"].tolist()[:3] == [
        "josé@example.com", "zoë@example.com", "søren@example.com"
    ]


def test_utf16_export() -> None:
    data = "name\temail\nAnn\tann@example.com\n".encode("utf-16")
    frame = load_contacts(io.BytesIO(data))
    assert frame["email"].tolist() == ["ann@example.com"]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        pytest.param(b"abc", "abc", id="ascii"),
        pytest.param(b"\xef\xbb\xbfabc", "abc", id="utf8-bom"),
        pytest.param("ä\n".encode() + b"\xe4\n", "ä\nä\n", id="utf8-then-latin1-line"),
        pytest.param(b"\x81\n", "\x81\n", id="byte-undefined-in-cp1252"),
    ],
)
def test_decode_text(data: bytes, text: str) -> None:
    assert decode_text(data) == text


def test_excel(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    path = tmp_path / "list.xlsx"
    pd.DataFrame({"Name": ["Ann", "Bob"], "Email Address": ["ann@example.com", None],
                  "Zip": ["01234", "5"]}).to_excel(path, index=False)
    frame = load_contacts(path)
    assert frame.attrs["smtpkit_email_column"] == "Email Address"
    assert frame["Zip"].tolist() == ["01234", "5"]
    assert frame["source_row"].tolist() == [1, 2]
    assert clean(frame)["reason"].tolist() == ["ok", "blank"]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "list.parquet"
    pd.DataFrame({"id": [1, 2], "mail": ["ann@example.com", None]}).to_parquet(path)
    frame = load_contacts(path)
    assert frame.attrs["smtpkit_email_column"] == "mail"
    assert frame["id"].tolist() == [1, 2]
    assert clean(frame)["reason"].tolist() == ["ok", "missing"]
    # the same bytes without a telling file name are recognised by their magic number
    assert load_contacts(io.BytesIO(path.read_bytes()))["mail"].tolist()[0] == "ann@example.com"


def test_existing_source_row_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cleaned.csv"
    path.write_text("source_row,email\n17,ann@example.com\n42,bob@example.com\n", encoding="utf-8")
    assert load_contacts(path)["source_row"].tolist() == ["17", "42"]


@pytest.mark.parametrize(
    ("columns", "found"),
    [
        pytest.param(["name", "email"], "email", id="email"),
        pytest.param(["name", "E-Mail"], "E-Mail", id="e-mail"),
        pytest.param(["Email Address", "name"], "Email Address", id="email-address"),
        pytest.param(["email_address"], "email_address", id="snake-case"),
        pytest.param(["Courriel", "nom"], "Courriel", id="french"),
        pytest.param(["email", "mail"], "email", id="exact-name-wins"),
    ],
)
def test_find_email_column_by_name(columns: list[str], found: str) -> None:
    frame = pd.DataFrame([["x"] * len(columns)], columns=columns)
    assert find_email_column(frame) == found


def test_find_email_column_by_content() -> None:
    frame = pd.DataFrame({"name": ["Ann", "Bob"], "contact": ["ann@example.com", "bob@x.io"]})
    assert find_email_column(frame) == "contact"


def test_ambiguous_and_missing_columns_list_the_columns() -> None:
    two_names = pd.DataFrame({"Work Email": ["a@x.com"], "Private Mail": ["b@x.com"]})
    with pytest.raises(InputError) as info:
        find_email_column(two_names.rename(columns={"Work Email": "mail", "Private Mail": "Mail"}))
    assert "Several columns could hold the email addresses ('mail', 'Mail')" in str(info.value)
    two_contents = pd.DataFrame({"a": ["x@y.com"], "b": ["z@y.com"]})
    with pytest.raises(InputError, match=r"hold values with an @-sign \('a', 'b'\)"):
        find_email_column(two_contents)
    with pytest.raises(MissingColumnError) as missing:
        find_email_column(pd.DataFrame({"name": ["Ann"], "city": ["Oslo"]}))
    assert str(missing.value) == (
        "No column looks like it holds email addresses; the columns are: 'name', 'city'. "
        "Pass column='...' with the right one."
    )


def test_column_option(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("a,b\nx@y.com,z@y.com\n", encoding="utf-8")
    assert load_contacts(path, column="b").attrs["smtpkit_email_column"] == "b"
    with pytest.raises(MissingColumnError) as info:
        load_contacts(path, column="email")
    assert "has no column 'email'; its columns are 'a', 'b'" in str(info.value)


def test_unreadable_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist; check the path"):
        load_contacts(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a folder"):
        load_contacts(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="is empty: a contact file needs a header row"):
        load_contacts(empty)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_contacts(broken)
    with pytest.raises(InputError, match="takes a path, bytes or an open file, not int"):
        load_contacts(42)  # type: ignore[arg-type]


def test_repository_sample_file_loads() -> None:
    path = ROOT / "data" / "contacts.csv"
    if not path.exists():
        pytest.skip("data/contacts.csv is not in this checkout")
    frame = load_contacts(path)
    assert frame.attrs["smtpkit_email_column"] == "email"
    assert clean(frame)["reason"].notna().all()


# --- rows longer than the header, and headers that are not names --------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("email,name\nann@example.com,Ann,\nbob@example.com,Bob,\n",
                     id="trailing-comma-on-every-row"),
        pytest.param("email,name\nann@example.com,Ann,\nbob@example.com,Bob\n",
                     id="trailing-comma-on-the-first-row"),
        pytest.param("email,name\nann@example.com,Ann\nbob@example.com,Bob,,\n",
                     id="trailing-commas-on-a-later-row"),
        pytest.param('email;name\nann@example.com;Ann;""\n\nbob@example.com;Bob; \n',
                     id="semicolons-empty-quoted-and-blank-extras"),
    ],
)
def test_empty_fields_beyond_the_header_do_not_shift_the_rows(text: str) -> None:
    frame = load_contacts(io.StringIO(text))
    assert list(frame.columns) == ["source_row", "email", "name"]
    assert frame["email"].tolist() == ["ann@example.com", "bob@example.com"]
    assert frame["name"].tolist() == ["Ann", "Bob"]
    assert frame["source_row"].tolist() == [1, 2]
    assert clean(frame)["reason"].tolist() == ["ok", "ok"]


@pytest.mark.parametrize(
    ("text", "line", "fields"),
    [
        pytest.param("email,name\nann@example.com,Ann,VIP\nbob@example.com,Bob\n", 2, 3,
                     id="first-row"),
        pytest.param("email,name\nann@example.com,Ann\nbob@example.com,Bob,,VIP\n", 3, 4,
                     id="later-row"),
        pytest.param('email,name\nann@example.com,Ann\n\n"bob@example.com","Bob\nBobby",x\n',
                     4, 3, id="after-a-blank-line-in-a-quoted-multiline-row"),
    ],
)
def test_values_beyond_the_header_name_the_line(
    tmp_path: Path, text: str, line: int, fields: int
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_contacts(path)
    assert str(info.value) == (
        f"Line {line} of {path} has {fields} fields but the header has 2, so its values "
        "cannot be matched to the columns. Remove the extra values, quote values that contain "
        "',', or add the missing column names to the header, then load the file again."
    )


def test_excel_without_a_header_row_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    path = tmp_path / "noheader.xlsx"
    pd.DataFrame([[1, "ann@example.com"], [2, "bob@example.com"]]).to_excel(
        path, index=False, header=False
    )
    with pytest.raises(InputError) as info:
        load_contacts(path)
    assert str(info.value) == (
        f"The first row of {path} holds 'ann@example.com', an email address, where the column "
        "names belong: the file seems to have no header row. Add a first row with column names "
        "(such as email,name) and load it again."
    )
    with pytest.raises(InputError, match="seems to have no header row"):
        load_contacts(io.StringIO("ann@example.com,Ann\nbob@example.com,Bob\n"))


def test_numeric_header_cells_are_column_labels_that_work(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    path = tmp_path / "numbers.xlsx"
    pd.DataFrame({2024: ["ann@example.com", "x"], "note": ["a", "b"]}).to_excel(path, index=False)
    frame = load_contacts(path)
    assert frame.attrs["smtpkit_email_column"] == 2024
    assert clean(frame)["reason"].tolist() == ["ok", "no_at_sign"]
    assert find_email_column(pd.DataFrame({0: ["Ann"], 1: ["ann@example.com"]})) == 1
    assert load_contacts(path, column=2024)["note"].tolist() == ["a", "b"]
