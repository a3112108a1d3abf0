"""Read a contact list (CSV, Excel, Parquet), find the address column, keep the source row.

``load_contacts(path_or_buffer)`` returns a frame of the file's columns plus ``source_row`` (the
1-based number of the record in the file, the header not counted), with the name of the address
column in ``frame.attrs["smtpkit_email_column"]`` (which ``clean`` uses by default).

CSV files are read the way a contact export needs:

* every column as text (leading zeros, ``+`` in phone numbers, ``"NA"`` and ``""`` stay as they
  are: a blank address is a row with a reason, never a dropped row);
* the encoding is worked out per line: UTF-8 (with or without BOM), UTF-16 with a BOM, and lines
  in Windows-1252 / Latin-1 mixed into a UTF-8 file (a common result of concatenated exports);
* the delimiter is sniffed among ``, ; TAB |``.

The address column, when ``column`` is not given, is the one whose name says so (``email``,
``E-Mail``, ``Email Address``, ``mail``, ``courriel`` ...); when no name says so, the one column
whose values mostly contain an ``@``. Several candidates or none raise an error that lists the
columns.

Example:
    >>> import io
    >>> frame = load_contacts(io.StringIO("Name;E-Mail\\nAnn;ann@example.com\\nBob;NA\\n"))
    >>> frame.attrs["smtpkit_email_column"], frame["E-Mail"].tolist(), frame["source_row"].tolist()
    ('E-Mail', ['ann@example.com', 'NA'], [1, 2])
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Hashable
from typing import IO, Any

import pandas as pd

from .errors import InputError, MissingColumnError

__all__ = [
    "ADDRESS_COLUMN_NAMES",
    "SOURCE_ROW",
    "decode_text",
    "find_email_column",
    "load_contacts",
]

#: Column that holds the 1-based record number in the source file.
SOURCE_ROW = "source_row"
#: Column names (lower case, without spaces, ``-`` and ``_``) that mean "the email address".
ADDRESS_COLUMN_NAMES: frozenset[str] = frozenset(
    {
        "email", "emailaddress", "mail", "mailaddress", "emails", "emailadresse", "mailadresse",
        "courriel", "adressecourriel", "adresseemail", "adressemail", "correo",
        "correoelectronico", "correoelectrónico", "posta", "indirizzoemail", "recipient",
        "address", "to", "emailid", "contactemail", "primaryemail",
    }
)
_EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
_SNIFF_BYTES = 64 * 1024
_ADDRESS_LIKE = re.compile(r"[^@\s<>()]+@[^@\s<>()]+\.[^@\s<>()]+")
_TOO_MANY_FIELDS = re.compile(r"Expected \d+ fields in line \d+, saw \d+")


def decode_text(data: bytes, /) -> str:
    """Decode a text file whose lines may be in different encodings.

    UTF-16/UTF-32 with a BOM as a whole; otherwise UTF-8 (a BOM is dropped), and every line that
    is not UTF-8 as Windows-1252, or Latin-1 for the five bytes Windows-1252 leaves undefined.

    Example:
        >>> decode_text("José\\n".encode("utf-8") + "Zoë\\n".encode("cp1252"))
        'José\\nZoë\\n'
    """
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return data.decode("utf-32")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    out: list[str] = []
    for line in lines:
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                out.append(line.decode("cp1252"))
            except UnicodeDecodeError:
                out.append(line.decode("latin-1"))
    return "\n".join(out)


def _squash(name: object) -> str:
    return re.sub(r"[\s_\-.:]+", "", str(name)).lower()


def find_email_column(frame: pd.DataFrame, /) -> Hashable:
    """The label of the column that holds the addresses (see the module docstring).

    Labels need not be strings (an Excel sheet without a header row has 0, 1, 2 ...): the label
    is returned as it is in ``frame.columns``, so that ``frame[label]`` finds it.
    Raises MissingColumnError when there is none and InputError when it is ambiguous; both list
    the columns.
    """
    columns = list(frame.columns)
    listed = ", ".join(repr(c) for c in columns) or "no columns at all"
    by_name = [c for c in columns if _squash(c) in ADDRESS_COLUMN_NAMES]
    if len(by_name) > 1:
        exact = [c for c in by_name if _squash(c) in ("email", "emailaddress")]
        if len(exact) == 1:
            return exact[0]
        raise InputError(
            f"Several columns could hold the email addresses ({', '.join(map(repr, by_name))}); "
            f"pass column='...' to choose one. The columns are: {listed}."
        )
    if by_name:
        return by_name[0]
    by_content: list[Hashable] = []
    for position, name in enumerate(columns):
        sample = frame.iloc[:1000, position]
        texts = [v for v in sample if isinstance(v, str) and v.strip()]
        if texts and sum("@" in v for v in texts) >= 0.5 * len(texts):
            by_content.append(name)
    if len(by_content) == 1:
        return by_content[0]
    if len(by_content) > 1:
        raise InputError(
            f"Several columns hold values with an @-sign ({', '.join(map(repr, by_content))}); "
            f"pass column='...' to choose one. The columns are: {listed}."
        )
    raise MissingColumnError(
        f"No column looks like it holds email addresses; the columns are: {listed}. "
        "Pass column='...' with the right one."
    )


def _read_source(source: Any) -> tuple[bytes | str, str]:
    """The raw bytes of the source (text for a text buffer) and a name for messages."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        try:
            with open(path, "rb") as fh:
                return fh.read(), path
        except FileNotFoundError:
            raise InputError(f"The contact file {path!r} does not exist; check the path.") from None
        except IsADirectoryError:
            raise InputError(f"{path!r} is a folder, not a contact file.") from None
        except OSError as exc:
            raise InputError(f"The contact file {path!r} cannot be read ({exc}).") from None
    if isinstance(source, bytes | bytearray):
        return bytes(source), "the given bytes"
    if hasattr(source, "read"):
        data = source.read()
        name = str(getattr(source, "name", "the given buffer"))
        return (data if isinstance(data, str) else bytes(data)), name
    raise InputError(
        f"load_contacts() takes a path, bytes or an open file, not {type(source).__name__}."
    )


def _kind(name: str, data: bytes) -> str:
    lower = name.lower()
    if lower.endswith(_PARQUET_SUFFIXES) or data[:4] == b"PAR1":
        return "parquet"
    if lower.endswith(_EXCEL_SUFFIXES) or data[:4] in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):
        return "excel"
    return "csv"


def _read_csv(text: str, name: str) -> pd.DataFrame:
    sample = text[:_SNIFF_BYTES]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        try:
            return _parse_csv(text, delimiter)
        except _LongerRows:
            # Some row has more fields than the header. Empty extra fields (a trailing
            # delimiter on data rows) lose nothing: read only the header's columns. Otherwise
            # say which line; guessing which of its values belongs to which column would shift it.
            width = _check_extra_fields(text, delimiter, name)
            return _parse_csv(text, delimiter, usecols=range(width))
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{name} is empty: a contact file needs a header row.") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"{name} is not a readable CSV file ({exc}).") from None


class _LongerRows(Exception):
    """pandas met a data row with more fields than the header."""


def _parse_csv(text: str, delimiter: str, *, usecols: range | None = None) -> pd.DataFrame:
    """The CSV text as a frame of strings; raises _LongerRows when a row is longer than the header.

    index_col=False: without it pandas takes a first data row longer than the header for an
    index column plus data, and moves every value one column to the right (a trailing comma).
    """
    options: dict[str, Any] = {
        "sep": delimiter, "dtype": str, "keep_default_na": False, "na_values": [],
        "skip_blank_lines": True, "index_col": False, "engine": "c",
    }
    if usecols is not None:  # longer rows were checked: their extra fields are empty
        return pd.read_csv(io.StringIO(text), usecols=usecols, **options)
    with warnings.catch_warnings():
        # pandas only warns ("loss of data with index_col=False") when it drops extra fields
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(io.StringIO(text), **options)
        except pd.errors.ParserWarning:
            raise _LongerRows from None
        except pd.errors.ParserError as exc:
            if _TOO_MANY_FIELDS.search(str(exc)):
                raise _LongerRows from None
            raise


def _check_extra_fields(text: str, delimiter: str, name: str) -> int:
    """The header's width, after checking that no row has a value beyond it."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    width = None
    first_line = 1
    for row in reader:
        line, first_line = first_line, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0]):
            continue  # a blank line (pandas skips these too)
        if width is None:
            width = len(row)
            continue
        if len(row) > width and any(value.strip() for value in row[width:]):
            raise InputError(
                f"Line {line} of {name} has {len(row)} fields but the header has {width}, so "
                f"its values cannot be matched to the columns. Remove the extra values, quote "
                f"values that contain {delimiter!r}, or add the missing column names to the "
                "header, then load the file again."
            )
    return width or 0


def load_contacts(
    path_or_buffer: str | os.PathLike[str] | bytes | IO[Any],
    /,
    *,
    column: Hashable | None = None,
) -> pd.DataFrame:
    """Read a CSV, Excel or Parquet contact list; see the module docstring for the rules.

    Parameters:
        column: the address column; found from the names or the values when not given.

    Example:
        >>> import io
        >>> frame = load_contacts(io.BytesIO(b"id,mail\\n7,ann@example.com\\n"))
        >>> frame.attrs["smtpkit_email_column"], frame.loc[0, "id"]
        ('mail', '7')
    """
    data, name = _read_source(path_or_buffer)
    kind = "csv" if isinstance(data, str) else _kind(name, data)
    if isinstance(data, str):
        frame = _read_csv(data, name)
    elif kind == "parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:
            raise InputError(f"{name} is not a readable Parquet file ({exc}).") from None
    elif kind == "excel":
        frame = _read_excel(data, name)
    else:
        frame = _read_csv(decode_text(data), name)
    if kind != "parquet":
        _check_header_row(frame, name)
    if column is not None and column not in frame.columns:
        listed = ", ".join(repr(str(c)) for c in frame.columns)
        raise MissingColumnError(
            f"{name} has no column {column!r}; its columns are {listed}. "
            "Pass the one with the addresses as column='...' (--column on the command line)."
        )
    email_column = column if column is not None else find_email_column(frame)
    if SOURCE_ROW not in frame.columns:
        frame.insert(0, SOURCE_ROW, range(1, len(frame) + 1))
    frame.attrs["smtpkit_email_column"] = email_column
    return frame


def _check_header_row(frame: pd.DataFrame, name: str) -> None:
    """Refuse a file whose first row is a contact, not column names (it would be lost)."""
    for label in frame.columns:
        text = str(label).strip()
        # pandas makes a repeated name unique with ".1", ".2": still an address
        if _ADDRESS_LIKE.fullmatch(text):
            raise InputError(
                f"The first row of {name} holds {text!r}, an email address, where the column "
                "names belong: the file seems to have no header row. Add a first row with "
                "column names (such as email,name) and load it again."
            )


def _read_excel(data: bytes, name: str) -> pd.DataFrame:
    try:
        return pd.read_excel(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[])
    except ImportError as exc:
        raise InputError(
            f"Reading the Excel file {name} needs an extra package ({exc}); install it with "
            "pip install openpyxl."
        ) from None
    except Exception as exc:
        raise InputError(f"{name} is not a readable Excel file ({exc}).") from None
