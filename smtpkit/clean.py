"""Clean a contact list: extract, validate, normalize, dedupe, flag; a reason for every row.

``clean(frame)`` returns a new frame (same index and order, input untouched) with these columns
added after the input's own:

=================== ==========================================================================
``email_normalized`` the address as email-validator normalizes it (NA when invalid); the send
                     engine uses it as the recipient
``local``           local part (before the ``@``), as normalized
``domain``          domain, Unicode form for an internationalized domain
``ascii_email``     email-validator's ``ascii_email`` (NA when the address needs SMTPUTF8)
``smtputf8``        the address needs the SMTPUTF8 extension (non-ASCII local part)
``valid``           email-validator accepts the address (syntax only)
``reason``          stable code, see the table below
``reason_detail``   a readable sentence (email-validator's own message for syntax errors)
``duplicate``       the same address as an earlier valid row (letter case ignored, see below)
``duplicate_of``    index label of that earlier row (NA otherwise)
``role``            a role account (info@, sales@, postmaster@ ...), see ``_clean_flags``
``disposable``      a throwaway-mailbox domain (the ``disposable-email-domains`` blocklist)
``suggestion``      the address with a likely typo in the domain fixed (gmial.com -> gmail.com);
                    never applied, NA when unsure
``mx_ok``           only with ``check_mx=True``: the domain accepts mail (True/False, NA when
                    DNS did not answer)
``suppressed``      the address is in ``suppress``
``sendable``        ``valid & ~duplicate & ~suppressed`` (``& mx_ok is not False`` with check_mx)
=================== ==========================================================================

Reason codes (``REASONS``), in the order a row gets the first that applies:

======================= ==================================================================
``missing``             the cell holds no value (NA, None, NaN)
``not_text``            a number, bytes that are not ASCII, or another non-text value
``blank``               empty or whitespace only
``control_characters``  a control character (CR, LF, NUL, TAB inside the address, ...) or a
                        Unicode line separator: such a value must never reach SMTP
``too_long``            longer than email allows (254 bytes, 253 after the @, 63 per label)
``no_at_sign``          no ``@``
``empty_local``         nothing before the ``@``
``empty_domain``        nothing after the ``@``
``invalid_local``       characters or dots not allowed before the ``@``
``invalid_domain``      not a valid domain name (characters, dots, hyphens, no period, no valid
                        top-level domain, bad IDNA)
``reserved_domain``     a special-use name (.test, .local, localhost, .invalid, .onion, .arpa)
``unsafe_characters``   invisible, formatting or other unsafe Unicode characters
``smtputf8_required``   non-ASCII local part while ``allow_smtputf8=False``
``quoted_local``        a quoted local part (``"john doe"@x.com``), refused by email-validator
``domain_literal``      an IP address in brackets after the ``@``
``display_name``        a name with angle brackets that could not be taken apart
``invalid_syntax``      any other syntax error (see ``reason_detail``)
``nxdomain``            check_mx: the domain does not exist
``null_mx``             check_mx: the domain publishes a null MX (RFC 7505)
``no_mx``               check_mx: no MX and no usable A/AAAA record, or no MX and
                        SPF ``v=spf1 -all`` (as email-validator's deliverability check)
``suppressed``          the address is in ``suppress``
``duplicate``           the same address as an earlier row (see ``duplicate_of``)
``ok``                  sendable
======================= ==================================================================

What is validated is the *extracted* address: surrounding whitespace (spaces, tabs, no-break
spaces, a BOM) is stripped, then one pair of surrounding quotes, then a ``Name <address>`` form
is reduced to the address, then a ``mailto:`` prefix is removed. The verdict and normalized form
are exactly ``email_validator.validate_email(extracted, check_deliverability=False,
allow_smtputf8=allow_smtputf8)`` (with email-validator's other defaults: no quoted local parts, no
IP literals). The input cell stays as it was.

Duplicates: email-validator keeps the case of the local part (RFC 5321 says it may matter), but
real mailbox providers ignore it and exported lists repeat addresses in other cases, so two rows
are duplicates when their ``email_normalized`` values are equal after Unicode lower-casing. The
first valid row is kept; ``email_normalized`` itself is left exactly as email-validator returns it.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"email": ["Ann@Example.com", " ann@example.COM", "bob@", None]})
    >>> out = clean(frame)
    >>> out["email_normalized"].tolist()
    ['Ann@example.com', 'ann@example.com', <NA>, <NA>]
    >>> out["reason"].tolist(), out["sendable"].tolist()
    (['ok', 'duplicate', 'empty_domain', 'missing'], [True, False, False, False])
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._clean_flags import is_disposable, suggest_domain
from ._clean_syntax import validate_many
from .errors import ConfigError, InputError, MissingColumnError

if TYPE_CHECKING:
    from .dns import MXAnswer, Resolver

__all__ = [
    "CLEAN_COLUMNS",
    "REASONS",
    "CleanReport",
    "clean",
    "clean_report",
    "extract_address",
]

#: Reason code -> what it means (the order is the order of precedence, ``ok`` last).
REASONS: Mapping[str, str] = {
    "missing": "The cell holds no value (NA, None, NaN).",
    "not_text": "The cell holds a number, non-ASCII bytes or another value that is not text.",
    "blank": "The cell is empty or holds only whitespace.",
    "control_characters": "The cell contains a control character or a line break.",
    "too_long": "The address is longer than email allows.",
    "no_at_sign": "There is no @-sign.",
    "empty_local": "There is nothing before the @-sign.",
    "empty_domain": "There is nothing after the @-sign.",
    "invalid_local": "The part before the @-sign has characters or dots that are not allowed.",
    "invalid_domain": "The part after the @-sign is not a valid domain name.",
    "reserved_domain": "The domain is a special-use name that cannot receive mail.",
    "unsafe_characters": "The address contains invisible or otherwise unsafe characters.",
    "smtputf8_required": "The part before the @-sign is not ASCII and allow_smtputf8 is False.",
    "quoted_local": "The part before the @-sign is quoted, which is not accepted.",
    "domain_literal": "The part after the @-sign is an IP address in brackets.",
    "display_name": "A name with angle brackets that could not be taken apart.",
    "invalid_syntax": "The address is not valid (see reason_detail).",
    "nxdomain": "The domain does not exist (check_mx).",
    "null_mx": "The domain says it accepts no mail (null MX, RFC 7505) (check_mx).",
    "no_mx": "The domain has no mail server (check_mx).",
    "suppressed": "The address is on the suppression list.",
    "duplicate": "The same address as an earlier row (letter case ignored).",
    "ok": "Valid and sendable.",
}
_CODES: tuple[str, ...] = tuple(REASONS)
_CODE = {code: i for i, code in enumerate(_CODES)}

#: The columns ``clean`` adds, in order (``mx_ok`` only with ``check_mx=True``).
CLEAN_COLUMNS: tuple[str, ...] = (
    "email_normalized",
    "local",
    "domain",
    "ascii_email",
    "smtputf8",
    "valid",
    "reason",
    "reason_detail",
    "duplicate",
    "duplicate_of",
    "role",
    "disposable",
    "suggestion",
    "mx_ok",
    "suppressed",
    "sendable",
)

# Stripped from both ends before anything else: spaces, tab, no-break and other Unicode spaces,
# zero-width space and BOM. CR/LF are *not* stripped: they are flagged as control characters.
_STRIP = " \t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
         "\u200b\u202f\u205f\u3000\ufeff"
_CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f\x{2028}\x{2029}]"
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_QUOTED_RE = re.compile(r'"([^"]*)"|\'([^\']*)\'')
_DISPLAY_RE = re.compile(r"[^<>]*<([^<>]*)>")
_MAX_BYTES = 254
_STR = pa.large_string()
_STRING_DTYPE = pd.StringDtype("pyarrow")  # the nullable "string" dtype (NA, not NaN)


def extract_address(text: str, /) -> str:
    """The address inside a cell: whitespace, quotes, ``Name <...>`` and ``mailto:`` removed.

    Example:
        >>> extract_address(' "Jane Doe" <mailto:jane@example.com> ')
        'jane@example.com'
    """
    s = text.strip(_STRIP)
    m = _QUOTED_RE.fullmatch(s)
    if m:
        s = (m.group(1) if m.group(1) is not None else m.group(2)).strip(_STRIP)
    m = _DISPLAY_RE.fullmatch(s)
    if m:
        s = m.group(1).strip(_STRIP)
    if s[:7].lower() == "mailto:":
        s = s[7:].strip(_STRIP)
    return s


def _reason_for(message: str, address: str) -> str:
    """Map one email-validator message to a stable reason code."""
    m = message.lower()
    if "must have an @-sign" in m or "instead of a regular at-sign" in m:
        return "no_at_sign"
    if "something before the @-sign" in m:
        return "empty_local"
    if "something after the @-sign" in m:
        return "empty_domain"
    if "too long" in m or "so many characters" in m:
        return "too_long"
    if "internationalized characters before the @-sign are not supported" in m:
        return "smtputf8_required"
    if "quoting the part before the @-sign" in m:
        return "quoted_local"
    if "bracket" in m and "display name" not in m and "angle bracket" not in m:
        return "domain_literal"
    if "display name" in m or "angle bracket" in m or "anything after the email address" in m:
        return "display_name"
    if "special-use or reserved" in m:
        return "reserved_domain"
    if "unsafe characters" in m:
        return "unsafe_characters"
    if "two periods in a row" in m:
        return "invalid_local" if ".." in address.partition("@")[0] else "invalid_domain"
    if "before the @-sign" in m or "cannot start with a period" in m:
        return "invalid_local"
    if (
        "after the @-sign" in m
        or "cannot end with a" in m
        or "period and a hyphen" in m
        or "two dashes" in m
        or "idna" in m
    ):
        return "invalid_domain"
    return "invalid_syntax"


# --- input cells --------------------------------------------------------------------------


def _text_cells(
    values: pd.Series, allow_smtputf8: bool = True
) -> tuple[pa.Array, dict[int, tuple[str, str]]]:
    """The cells as an Arrow string array (null where not text) and reasons for the non-text ones.

    Returns ``(text, prechecked)``; ``prechecked`` maps row positions to ``(code, detail)`` for
    cells that are missing or not text; other null cells do not occur.
    """
    if isinstance(values.dtype, pd.StringDtype) or (
        isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_string(values.dtype.pyarrow_dtype)
    ) or (
        isinstance(values.dtype, pd.ArrowDtype)
        and pa.types.is_large_string(values.dtype.pyarrow_dtype)
    ):
        text = pa.array(values.array).cast(_STR)
        nulls = np.flatnonzero(text.is_null().to_numpy(zero_copy_only=False))
        return text, {int(i): ("missing", REASONS["missing"]) for i in nulls}
    objects = cast(Any, values).to_numpy(dtype=object, na_value=None)
    # Only all-str columns take the fast road: Arrow would also take UTF-8 bytes as text, where
    # email-validator accepts bytes only when they are ASCII.
    if pd.api.types.infer_dtype(objects, skipna=True) in ("string", "empty"):
        try:
            text = pa.array(objects, type=_STR, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, UnicodeError):
            pass  # lone surrogates: handled one by one below
        else:
            nulls = np.flatnonzero(text.is_null().to_numpy(zero_copy_only=False))
            return text, {int(i): ("missing", REASONS["missing"]) for i in nulls}
    cells: list[str | None] = []
    prechecked: dict[int, tuple[str, str]] = {}
    for i, cell in enumerate(objects):
        if isinstance(cell, str):
            try:
                cell.encode("utf-8")
            except UnicodeError:
                prechecked[i] = _python_verdict(cell, allow_smtputf8)
                cells.append(None)
            else:
                cells.append(cell)
            continue
        cells.append(None)
        if isinstance(cell, bytes | bytearray):
            try:
                cells[-1] = bytes(cell).decode("ascii")
            except UnicodeDecodeError:
                prechecked[i] = (
                    "not_text",
                    "The cell holds bytes that are not ASCII text; decode them to str first.",
                )
        elif _is_missing(cell):
            prechecked[i] = ("missing", REASONS["missing"])
        else:
            prechecked[i] = (
                "not_text",
                f"The cell holds a {type(cell).__name__} ({_short(cell)}), not text.",
            )
    return pa.array(cells, type=_STR), prechecked


def _is_missing(cell: Any) -> bool:
    if cell is None or cell is pd.NA or cell is pd.NaT:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    try:
        return bool(pd.isna(cell)) if np.ndim(cell) == 0 else False
    except (TypeError, ValueError):
        return False


def _short(cell: Any) -> str:
    text = repr(cell)
    return text if len(text) <= 40 else text[:37] + "..."


def _python_verdict(cell: str, allow_smtputf8: bool) -> tuple[str, str]:
    """Reason for a string Arrow cannot hold (lone surrogates): never valid, see the tests."""
    from ._clean_syntax import validate_one

    s = cell.strip(_STRIP)
    if not s:
        return ("blank", REASONS["blank"])
    if _CONTROL_RE.search(s):
        return ("control_characters", _control_detail(s))
    address = extract_address(s)
    size = len(address.encode("utf-8", "surrogatepass"))
    if size > _MAX_BYTES:
        return ("too_long", _too_long_detail(size))
    result = validate_one(address, allow_smtputf8=allow_smtputf8)
    if result[0]:  # pragma: no cover - email-validator rejects unpaired surrogates
        return ("invalid_syntax", "The address cannot be encoded as UTF-8.")
    message = result[6] or "The address is not valid."
    return (_reason_for(message, address), message)


def _too_long_detail(size: int) -> str:
    return f"The address is {size} bytes long; an email address has at most {_MAX_BYTES}."


_CONTROL_NAMES = {"\r": "CARRIAGE RETURN", "\n": "LINE FEED", "\t": "TAB", "\x00": "NUL",
                  "\x7f": "DELETE", "\x85": "NEXT LINE", "\u2028": "LINE SEPARATOR",
                  "\u2029": "PARAGRAPH SEPARATOR"}


def _control_detail(text: str) -> str:
    found = sorted({c for c in text if _CONTROL_RE.match(c)})
    names = ", ".join(f"{_CONTROL_NAMES.get(c, 'control character')} U+{ord(c):04X}" for c in found)
    return f"The address contains {names}; such a value must never reach SMTP."


def _extract_candidates(cells: pa.Array) -> np.ndarray:
    """Cells that ``extract_address`` may change (the rest are addresses as they stand)."""
    found = pc.or_(
        pc.or_(pc.ends_with(cells, ">"), pc.starts_with(cells, "mailto:", ignore_case=True)),
        pc.or_(pc.starts_with(cells, '"'), pc.starts_with(cells, "'")),
    )
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


# --- the cells ----------------------------------------------------------------------------


class _Cells:
    """Verdicts, reasons, keys and flags for an array of stripped cells (nulls: not text)."""

    def __init__(self, stripped: pa.Array, *, allow_smtputf8: bool) -> None:
        n = len(stripped)
        self.n = n
        self.null = stripped.is_null().to_numpy(zero_copy_only=False)
        cells = stripped.fill_null("") if self.null.any() else stripped
        code = np.full(n, _CODE["ok"], dtype=np.int8)
        problems: dict[int, str] = {}

        control = pc.match_substring_regex(cells, _CONTROL_PATTERN).to_numpy(zero_copy_only=False)
        candidate = _extract_candidates(cells) & ~control
        extracted = cells
        if candidate.any():
            idx = np.flatnonzero(candidate)
            replaced = [extract_address(s) for s in cells.take(pa.array(idx)).to_pylist()]
            extracted = pc.replace_with_mask(cells, pa.array(candidate), pa.array(replaced, _STR))
        nbytes = pc.binary_length(extracted).to_numpy(zero_copy_only=False)
        too_long = (nbytes > _MAX_BYTES) & ~control
        # Control characters and over-long cells are decided here, not by email-validator.
        skip = control | too_long
        checked = pc.if_else(pa.array(skip), pa.scalar("", _STR), extracted) if skip.any() \
            else extracted
        verdicts = validate_many(checked, allow_smtputf8=allow_smtputf8, progress=True)

        bad = np.flatnonzero(~verdicts.valid)
        messages = verdicts.message.take(pa.array(bad)).to_pylist()
        addresses = extracted.take(pa.array(bad)).to_pylist()
        raw = cells.take(pa.array(bad)).to_pylist()
        for i, message, address, cell in zip(bad, messages, addresses, raw, strict=True):
            if self.null[i]:
                continue
            if control[i]:
                code[i] = _CODE["control_characters"]
                problems[int(i)] = _control_detail(cell)
            elif too_long[i]:
                code[i] = _CODE["too_long"]
                problems[int(i)] = _too_long_detail(int(nbytes[i]))
            elif not cell:
                code[i] = _CODE["blank"]
                problems[int(i)] = REASONS["blank"]
            else:
                code[i] = _CODE[_reason_for(message, address)]
                problems[int(i)] = message

        self.valid = verdicts.valid & ~self.null
        self.smtputf8 = verdicts.smtputf8
        self.code = code
        self.problems = problems
        self.extracted = extracted
        self.normalized = verdicts.normalized
        self.local = verdicts.local
        self.domain = verdicts.domain
        self.ascii_email = verdicts.ascii_email
        self.ascii_domain = verdicts.ascii_domain

    @property
    def key(self) -> pa.Array:
        """The dedupe key: the normalized address lower-cased (null when invalid)."""
        return pc.utf8_lower(self.normalized)

    @property
    def match_key(self) -> pa.Array:
        """The suppression key: ``key``, or the extracted text lower-cased for an invalid cell
        (so that a suppression entry still matches it)."""
        return pc.utf8_lower(pc.if_else(pa.array(self.valid), self.normalized, self.extracted))

    def flags(self) -> tuple[np.ndarray, np.ndarray, pa.Array]:
        """role, disposable, suggestion (the full suggested address) per cell."""
        from ._clean_flags import ROLE_NAMES

        # A role name in any case, with or without a +tag (info+news@ is a role account too).
        names = "|".join(re.escape(name) for name in sorted(ROLE_NAMES))
        role = pc.match_substring_regex(self.local, f"^(?:{names})(?:\\+.*)?$", ignore_case=True)
        role_np = np.asarray(role.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

        domains = pc.unique(pc.drop_null(self.ascii_domain))
        which = pc.index_in(self.ascii_domain, value_set=domains)
        which_np = which.fill_null(len(domains)).to_numpy(zero_copy_only=False)
        domain_names = domains.to_pylist()
        disposable_by = np.array([is_disposable(d) for d in domain_names] + [False], dtype=bool)
        suggested = [suggest_domain(d) for d in domain_names] + [None]
        has = np.array([d is not None for d in suggested], dtype=bool)
        rows = np.flatnonzero(has[which_np])
        suggestion = pa.nulls(self.n, _STR)
        if len(rows):
            locals_ = self.local.take(pa.array(rows)).to_pylist()
            texts = [f"{lp}@{suggested[which_np[i]]}" for lp, i in zip(locals_, rows, strict=True)]
            at = np.full(self.n, -1, dtype=np.int64)
            at[rows] = np.arange(len(rows))
            suggestion = pa.array(texts, _STR).take(pa.array(at, mask=at < 0))
        return role_np, disposable_by[which_np], suggestion


# --- suppression lists ----------------------------------------------------------------------


def _suppression_keys(suppress: Any) -> pa.Array:
    """The lower-cased normalized addresses of a suppression frame, list, Series or file."""
    if isinstance(suppress, str | os.PathLike):
        values = _read_suppression_file(os.fspath(suppress))
    elif isinstance(suppress, pd.DataFrame):
        column = _suppression_column(suppress)
        values = suppress[column]
    elif isinstance(suppress, pd.Series):
        values = suppress
    elif isinstance(suppress, Iterable) and not isinstance(suppress, bytes | Mapping):
        values = pd.Series(list(suppress), dtype=object)
    else:
        raise InputError(
            f"suppress= takes a DataFrame with an email column, a list, set or Series of "
            f"addresses, or a path to a CSV or text file; got {type(suppress).__name__}."
        )
    text, _ = _text_cells(pd.Series(values).reset_index(drop=True))
    stripped = pc.drop_null(pc.utf8_trim(text, characters=_STRIP))
    if len(stripped) == 0:
        return pa.array([], _STR)
    return pc.unique(_Cells(pc.unique(stripped), allow_smtputf8=True).match_key)


def _suppression_column(frame: pd.DataFrame) -> str:
    column = frame.attrs.get("smtpkit_email_column")
    for name in (column, "email", "recipient", "address"):
        if name is not None and name in frame.columns:
            return str(name)
    if len(frame.columns) == 1:
        return str(frame.columns[0])
    raise MissingColumnError(
        "The suppress frame has no 'email' column; its columns are "
        f"{', '.join(map(repr, frame.columns))}. Pass suppress=frame[['the_column']] or rename "
        "it to 'email'."
    )


def _read_suppression_file(path: str) -> pd.Series:
    if not os.path.exists(path):
        raise InputError(f"The suppression file {path!r} does not exist; check the path.")
    if os.path.isdir(path):
        raise InputError(
            f"suppress={path!r} is a folder; pass the path of a CSV or text file of addresses "
            "(one a line), or a list or frame of them."
        )
    if path.lower().endswith((".csv", ".tsv", ".xlsx", ".xlsm", ".xls", ".parquet", ".pq")):
        from .contacts import load_contacts

        frame = load_contacts(path)
        return frame[frame.attrs["smtpkit_email_column"]]
    from .contacts import decode_text

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(
            f"The suppression file {path!r} cannot be read ({exc.strerror or exc}); check its "
            "permissions."
        ) from None
    lines = decode_text(data).splitlines()
    return pd.Series(
        [line for line in lines if line.strip() and not line.lstrip().startswith("#")],
        dtype=object,
    )


# --- MX -----------------------------------------------------------------------------------


_MX_REASON = {"nxdomain": "nxdomain", "null_mx": "null_mx", "no_mail": "no_mx", "no_send": "no_mx"}


def _mx_answers(domains: list[str], resolver: Resolver | None) -> dict[str, MXAnswer]:
    from ._portal import run
    from .dns import resolve_mx

    return run(resolve_mx(domains, resolver=resolver, progress=True))


# --- the public functions -------------------------------------------------------------------


def _resolve_column(frame: pd.DataFrame, column: Hashable | None) -> Hashable:
    """The label of the address column, as it is in ``frame.columns`` (not always a str)."""
    if column is None:
        column = frame.attrs.get("smtpkit_email_column", "email")
    try:
        present = column in frame.columns
    except TypeError:  # an unhashable value such as a list
        present = False
    if not present:
        names = ", ".join(repr(c) for c in frame.columns) or "none"
        raise MissingColumnError(
            f"The frame has no column {column!r}; its columns are {names}. "
            f"Pass column='...' with the one that holds the email addresses."
        )
    if isinstance(frame.columns, pd.MultiIndex) and not isinstance(column, tuple):
        raise InputError(
            f"The frame's columns have {frame.columns.nlevels} levels, so {column!r} names a "
            f"group of columns; pass the whole label of the address column as a tuple, such as "
            f"column={frame.columns[0]!r}."
        )
    if not isinstance(frame[column], pd.Series):
        raise InputError(
            f"The frame has more than one column named {column!r}; rename them so that the "
            "address column is unique."
        )
    return cast(Hashable, column)


def clean(
    frame: pd.DataFrame,
    /,
    *,
    column: Hashable | None = None,
    dedupe: bool = True,
    check_mx: bool = False,
    resolver: Resolver | None = None,
    suppress: Any = None,
    allow_smtputf8: bool = True,
) -> pd.DataFrame:
    """Validate, normalize and dedupe the addresses in ``frame[column]``; a reason per row.

    Parameters:
        column: the address column; default the one ``load_contacts`` found (``frame.attrs``),
            else ``"email"``.
        dedupe: mark later rows with the same address (any letter case) as duplicates.
        check_mx: look up each distinct domain's MX (async, cached on the resolver).
        resolver: a :class:`smtpkit.dns.Resolver` for ``check_mx`` (default: public DNS).
        suppress: addresses never to send to: a frame with an ``email`` column (such as
            ``smtpkit.suppressions(journal)``), a list/set/Series, or a CSV/text file path.
        allow_smtputf8: accept non-ASCII local parts (passed to email-validator).

    See the module docstring for the columns and reason codes.

    Example:
        >>> import pandas as pd
        >>> out = clean(pd.DataFrame({"email": ["Jane <jane@gmial.com>", "info@acme.com"]}))
        >>> out[["email_normalized", "suggestion", "role"]].values.tolist()
        [['jane@gmial.com', 'jane@gmail.com', False], ['info@acme.com', <NA>, True]]
    """
    if not isinstance(frame, pd.DataFrame):
        hint = " Use series.to_frame('email')." if isinstance(frame, pd.Series) else ""
        raise InputError(f"clean() takes a pandas DataFrame, not {type(frame).__name__}.{hint}")
    for option, value in (("dedupe", dedupe), ("check_mx", check_mx),
                          ("allow_smtputf8", allow_smtputf8)):
        if not isinstance(value, bool | np.bool_):
            raise ConfigError(f"{option}= must be True or False, not {value!r}.")
    if resolver is not None and not check_mx:
        raise ConfigError("resolver= is only used to look up MX records; pass check_mx=True too.")
    if resolver is not None:
        from .dns import Resolver

        if not isinstance(resolver, Resolver):
            raise ConfigError(
                f"resolver= must be a smtpkit.dns.Resolver, not {type(resolver).__name__} "
                f"({_short(resolver)}); to ask particular name servers, pass "
                "resolver=Resolver(backend=DNSPythonBackend(nameservers=[...])) from smtpkit.dns."
            )
    column = _resolve_column(frame, column)
    keys = _suppression_keys(suppress) if suppress is not None else None

    n = len(frame)
    text, prechecked = _text_cells(frame[column], allow_smtputf8)
    cells = _Cells(pc.utf8_trim(text, characters=_STRIP), allow_smtputf8=allow_smtputf8)
    valid = cells.valid
    code = cells.code
    code[cells.null] = _CODE["missing"]
    problems = cells.problems
    for position, (reason, message) in prechecked.items():
        code[position] = _CODE[reason]
        problems[position] = message

    role, disposable, suggestion = cells.flags()
    role &= valid
    disposable &= valid

    mx_ok: pd.arrays.BooleanArray | None = None
    if check_mx:
        mx_ok = _apply_mx(cells, code, problems, resolver)

    suppressed = np.zeros(n, dtype=bool)
    if keys is not None and len(keys):
        hit = pc.is_in(cells.match_key, value_set=keys).to_numpy(zero_copy_only=False)
        suppressed = np.asarray(hit, dtype=bool) & ~cells.null
        code[suppressed & (code == _CODE["ok"])] = _CODE["suppressed"]

    duplicate = np.zeros(n, dtype=bool)
    first_position = np.full(n, -1, dtype=np.int64)
    if dedupe and valid.any():
        positions = np.flatnonzero(valid)
        all_ids = pc.dictionary_encode(cells.key).indices.fill_null(-1)
        key_ids = all_ids.to_numpy(zero_copy_only=False)[positions]
        seen = pd.Series(key_ids).duplicated().to_numpy()
        first_of_key = np.full(int(key_ids.max()) + 1, -1, dtype=np.int64)
        first_of_key[key_ids[~seen]] = positions[~seen]
        dup_positions = positions[seen]
        duplicate[dup_positions] = True
        first_position[dup_positions] = first_of_key[key_ids[seen]]
        code[duplicate & (code == _CODE["ok"])] = _CODE["duplicate"]

    sendable = code == _CODE["ok"]
    detail = _details(n, problems, code)

    def strings(values: pa.Array) -> pd.Series:
        array = cast(Any, pd.arrays.ArrowStringArray)(values.cast(_STR), dtype=_STRING_DTYPE)
        return pd.Series(array, index=frame.index, copy=False)

    added: dict[str, Any] = {
        "email_normalized": strings(cells.normalized),
        "local": strings(cells.local),
        "domain": strings(cells.domain),
        "ascii_email": strings(cells.ascii_email),
        "smtputf8": cells.smtputf8 & valid,
        "valid": valid,
        "reason": strings(pa.array(_CODES, _STR).take(pa.array(code))),
        "reason_detail": strings(detail),
        "duplicate": duplicate,
        "duplicate_of": _labels(frame.index, first_position),
        "role": role,
        "disposable": disposable,
        "suggestion": strings(suggestion),
        "suppressed": suppressed,
        "sendable": sendable,
    }
    if mx_ok is not None:
        added["mx_ok"] = mx_ok
    ordered = {name: added[name] for name in CLEAN_COLUMNS if name in added}
    new = pd.DataFrame(ordered, index=frame.index)
    kept = frame.drop(columns=[c for c in new.columns if c in frame.columns])
    out = pd.concat([kept, new], axis=1)
    out.attrs = {**frame.attrs, "smtpkit_email_column": column}
    return out


def _details(n: int, problems: dict[int, str], code: np.ndarray) -> pa.Array:
    """reason_detail per row: a take from the distinct sentences (null for ok rows)."""
    texts = [REASONS["suppressed"], REASONS["duplicate"]]
    which = np.full(n, -1, dtype=np.int64)
    which[code == _CODE["suppressed"]] = 0
    which[code == _CODE["duplicate"]] = 1
    number: dict[str, int] = {}
    for position, text in problems.items():
        if code[position] not in (_CODE["suppressed"], _CODE["duplicate"]):
            which[position] = 2 + number.setdefault(text, len(number))
    texts += list(number)
    return pa.array(texts, _STR).take(pa.array(which, mask=which < 0))


def _labels(index: pd.Index, positions: np.ndarray) -> pd.Series:
    """Index labels at ``positions`` (NA where -1), integer labels as nullable Int64."""
    missing = positions < 0
    present = np.flatnonzero(~missing)
    labels = index.take(positions[present])
    if pd.api.types.is_integer_dtype(index.dtype):
        values = np.zeros(len(positions), dtype=np.int64)
        values[present] = np.asarray(labels, dtype=np.int64)
        return pd.Series(pd.arrays.IntegerArray(values, missing), index=index)
    objects = np.full(len(positions), None, dtype=object)
    objects[present] = np.asarray(labels, dtype=object)
    return pd.Series(objects, index=index, dtype=object)


def _apply_mx(
    cells: _Cells,
    code: np.ndarray,
    problems: dict[int, str],
    resolver: Resolver | None,
) -> pd.arrays.BooleanArray:
    """Look up every distinct valid domain once; mx_ok per row, mx reasons set in ``code``."""
    domains = pc.unique(pc.drop_null(cells.ascii_domain))
    names = domains.to_pylist()
    answers = _mx_answers(names, resolver) if names else {}
    per_domain = [answers[d.lower()] for d in names]
    which = pc.index_in(cells.ascii_domain, value_set=domains)
    which_np = which.fill_null(-1).to_numpy(zero_copy_only=False)
    accepts = np.array(
        [-1 if a.accepts_mail is None else int(a.accepts_mail) for a in per_domain] + [-1],
        dtype=np.int8,
    )
    state = np.where(cells.valid, accepts[which_np], -1)
    for position in np.flatnonzero(cells.valid & (state != 1)):
        answer = per_domain[which_np[position]]
        reason = _MX_REASON.get(answer.status)
        if code[position] != _CODE["ok"]:
            continue
        if reason is not None:
            code[position] = _CODE[reason]
            problems[int(position)] = answer.detail or REASONS[reason]
        else:
            problems[int(position)] = (
                f"The MX lookup for {answer.domain} failed ({answer.detail or answer.status}); "
                "deliverability is unknown, so the address is kept."
            )
    result = pd.array(state == 1, dtype="boolean")
    result[state < 0] = pd.NA
    return result


# --- the report -----------------------------------------------------------------------------


class CleanReport(pd.DataFrame):
    """Counts and shares per reason, with the totals above the table in notebooks.

    A DataFrame indexed by reason code with columns ``count``, ``share`` (of all rows) and
    ``meaning``; ``report.totals`` holds rows, valid, sendable, duplicates, role, disposable,
    suggestions and suppressed counts.
    """

    _metadata: ClassVar[list[str]] = ["totals"]
    totals: dict[str, int]

    @property
    def _constructor(self) -> type[CleanReport]:
        return CleanReport

    def _headline(self) -> str:
        totals = getattr(self, "totals", None) or {}
        return ", ".join(f"{k}: {v:,}" for k, v in totals.items())

    def __repr__(self) -> str:
        table = pd.DataFrame(self).to_string(formatters={"share": "{:.1%}".format})
        return f"{self._headline()}\n{table}"

    def _repr_html_(self) -> str:
        import html

        table = pd.DataFrame(self).to_html(float_format=lambda x: f"{x:.1%}")
        return f"<p><b>Clean report</b> &mdash; {html.escape(self._headline())}</p>{table}"


def clean_report(cleaned: pd.DataFrame, /) -> CleanReport:
    """A small summary of a ``clean`` result: rows per reason code, with shares and totals.

    Example:
        >>> import pandas as pd
        >>> report = clean_report(clean(pd.DataFrame({"email": ["a@example.com", "nope"]})))
        >>> report["count"].to_dict(), report.totals["sendable"]
        ({'no_at_sign': 1, 'ok': 1}, 1)
    """
    if not isinstance(cleaned, pd.DataFrame) or "reason" not in cleaned.columns:
        raise InputError(
            "clean_report() takes the frame returned by smtpkit.clean(); this one has no "
            "'reason' column."
        )
    total = len(cleaned)
    counts = cleaned["reason"].astype("string").value_counts(dropna=False)
    order = [c for c in _CODES if c in counts.index] + [
        c for c in counts.index if c not in REASONS
    ]
    body = pd.DataFrame(
        {
            "count": [int(counts[c]) for c in order],
            "share": [(int(counts[c]) / total) if total else 0.0 for c in order],
            "meaning": [REASONS.get(str(c), "") for c in order],
        },
        index=pd.Index([str(c) for c in order], name="reason"),
    )
    report = CleanReport(body)

    def count(name: str) -> int:
        if name not in cleaned.columns:
            return 0
        return int(cleaned[name].fillna(False).astype(bool).sum())

    report.totals = {
        "rows": total,
        "valid": count("valid"),
        "sendable": count("sendable"),
        "duplicates": count("duplicate"),
        "suppressed": count("suppressed"),
        "role": count("role"),
        "disposable": count("disposable"),
        "suggestions": int(cleaned["suggestion"].notna().sum()) if "suggestion" in cleaned else 0,
    }
    return report
