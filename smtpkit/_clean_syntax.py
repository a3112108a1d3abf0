"""Syntax verdicts for many addresses at once: email-validator's answers, mostly without calling it.

``validate_many`` gives, for an Arrow array of address strings, exactly what
``email_validator.validate_email(s, check_deliverability=False, allow_smtputf8=...)`` gives for
each ``s`` (verdict, normalized form, local part, domain, ASCII form, SMTPUTF8 flag, error text).
It gets there by doing less:

1. **Vectorized fast path.** A plain-ASCII address that matches ``_FAST_PATTERN`` (dot-atom local
   part, host-name labels of 1-63 characters, a dot, a top-level domain ending in a letter), has
   no ``--`` anywhere, is at most 254 bytes and is not under a special-use domain is valid, and
   its normalized form is the local part (lower-cased when it is an RFC 2142 mailbox name, as
   email-validator does) ``@`` the lower-cased domain. This is decided with Arrow compute
   kernels, no Python loop; one split of all rows (the others replaced by their normalized form
   first) gives the local part and domain columns.
2. **Explained rejects.** Any other ASCII address without ``"`` or ``<`` and without ``--`` after
   the ``@`` is invalid; ``_ascii_local_error`` / ``_ascii_domain_error`` reproduce the checks of
   email-validator's ``syntax.py`` in its order and with its messages (a few µs instead of ~10).
3. **Parts apart.** Without ``"`` and ``<`` an address splits at its first ``@``, and
   email-validator checks the two sides independently (local part first, then domain, then the
   length of the whole). So an internationalized (or ``xn--``, or bracketed) domain is validated
   once per distinct domain with ``validate_email("a@" + domain)``, a non-ASCII local part with
   email-validator's own ``validate_email_local_part`` (plus the NFC and RFC 2142 steps of
   ``validate_email``), and the answers are combined.
4. **Everything else** (quotes, angle brackets, no ``@`` in a non-ASCII string, length edge
   cases) is handed to ``validate_email`` itself, once per distinct string.

The tests (``tests/test_clean_differential.py``) check all of this against email-validator with
hypothesis and the public syntax corpora. When in doubt, a case goes to step 4.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Any

import email_validator
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from email_validator import EmailNotValidError, validate_email
from email_validator import rfc_constants as _rfc
from email_validator.syntax import (
    get_length_reason,
    safe_character_display,
    validate_email_local_part,
)

__all__ = ["Verdicts", "validate_many", "validate_one"]

_ATEXT = _rfc.ATEXT  # the RFC 5322 atext class body, as email-validator spells it
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_TOP_LABEL = r"(?:[a-zA-Z0-9][a-zA-Z0-9-]{0,61})?[a-zA-Z]"
#: Plain-ASCII addresses that email-validator accepts (plus the length, ``--`` and special-use
#: checks done beside it).
_FAST_PATTERN = (
    rf"^[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:{_LABEL}\.)+{_TOP_LABEL}$"
)
_MAX_ADDRESS = _rfc.EMAIL_MAX_LENGTH  # 254 octets
_MAX_DOMAIN = _rfc.DOMAIN_MAX_LENGTH  # 253 octets
_MAX_LABEL = _rfc.DNS_LABEL_LENGTH_LIMIT  # 63 octets
_CASE_INSENSITIVE = frozenset(_rfc.CASE_INSENSITIVE_MAILBOX_NAMES)
# Quick "is any character outside the class?" checks before naming the offending characters
# (both strings are ASCII where they are used).
_LOCAL_OUTSIDER = re.compile(f"[^.{_ATEXT}]")
_HOST_OUTSIDER = re.compile(r"[^a-zA-Z0-9.\-]")
_STR = pa.large_string()
_PROGRESS_FROM = 20_000  # addresses on the per-string path before a progress bar is worth it
_PROGRESS_DELAY = 1.0  # seconds: quicker work shows no bar at all
_FULL = object()  # memo marker: this domain needs the whole address checked at once


@dataclasses.dataclass(frozen=True)
class Verdicts:
    """email-validator's answers for an array of addresses, position by position.

    String arrays are null where email-validator gives no value (``ascii_email`` of an address
    that needs SMTPUTF8; everything but ``message`` for an invalid address).
    """

    valid: np.ndarray
    smtputf8: np.ndarray
    normalized: pa.Array
    local: pa.Array
    domain: pa.Array
    ascii_email: pa.Array
    message: pa.Array
    ascii_domain: pa.Array


Result = tuple[bool, str | None, str | None, str | None, str | None, bool, str | None, str | None]
# (valid, local, domain, normalized, ascii_email, smtputf8, message, ascii_domain)


def _invalid(message: str) -> Result:
    return (False, None, None, None, None, False, message, None)


def _is_special_use(ascii_domain: str) -> bool:
    return any(
        ascii_domain == d or ascii_domain.endswith("." + d)
        for d in email_validator.SPECIAL_USE_DOMAIN_NAMES
    )


def validate_one(address: str, /, *, allow_smtputf8: bool = True) -> Result:
    """email-validator's answer for one address (syntax only), never raising."""
    try:
        info = validate_email(
            address, check_deliverability=False, allow_smtputf8=allow_smtputf8
        )
    except EmailNotValidError as exc:
        return _invalid(str(exc))
    except Exception as exc:  # a bug deep in a dependency must not stop a whole list
        return _invalid(f"The address could not be checked ({type(exc).__name__}: {exc}).")
    return (
        True,
        info.local_part,
        info.domain,
        info.normalized,
        info.ascii_email,
        bool(info.smtputf8),
        None,
        info.ascii_domain,
    )


def _ascii_local_error(local: str) -> str | None:
    """email-validator's error for an ASCII, unquoted local part, or None when it is valid."""
    if not local:
        return "There must be something before the @-sign."
    if _rfc.DOT_ATOM_TEXT.match(local):
        return None
    bad = (
        {safe_character_display(c) for c in local if not _rfc.ATEXT_RE.match(c)}
        if _LOCAL_OUTSIDER.search(local)
        else None
    )
    if bad:
        return (
            "The email address contains invalid characters before the @-sign: "
            + ", ".join(sorted(bad))
            + "."
        )
    if local.endswith("."):
        return "An email address cannot have a period immediately before the @-sign."
    if local.startswith("."):
        return "An email address cannot start with a period."
    if ".." in local:
        return "An email address cannot have two periods in a row."
    return "The email address contains invalid characters before the @-sign."


def _ascii_domain_error(domain: str) -> str | None:
    """email-validator's error for a non-empty ASCII domain without ``--`` and not in brackets."""
    if len(domain) > _MAX_DOMAIN:
        reason = get_length_reason(domain, limit=_MAX_DOMAIN)
        return f"The email address is too long after the @-sign {reason}."
    bad = (
        {safe_character_display(c) for c in domain if not _rfc.ATEXT_HOSTNAME_INTL.match(c)}
        if _HOST_OUTSIDER.search(domain)
        else None
    )
    if bad:
        return (
            "The part after the @-sign contains invalid characters: " + ", ".join(sorted(bad)) + "."
        )
    d = domain.lower()  # what UTS-46 mapping does to these characters
    if d.endswith("."):
        return "An email address cannot end with a period."
    if d.startswith("."):
        return "An email address cannot have a period immediately after the @-sign."
    if ".." in d:
        return "An email address cannot have two periods in a row."
    if d.endswith("-"):
        return "An email address cannot end with a hyphen."
    if d.startswith("-"):
        return "An email address cannot have a hyphen immediately after the @-sign."
    if ".-" in d or "-." in d:
        return "An email address cannot have a period and a hyphen next to each other."
    for label in d.split("."):
        if len(label) > _MAX_LABEL:
            reason = get_length_reason(label, limit=_MAX_LABEL)
            return f"After the @-sign, periods cannot be separated by so many characters {reason}."
    if "." not in d:
        return "The part after the @-sign is not valid. It should have a period."
    if not _rfc.DOMAIN_NAME_REGEX.search(d):
        return "The part after the @-sign is not valid. It is not within a valid top-level domain."
    if _is_special_use(d):
        return (
            "The part after the @-sign is a special-use or reserved name that cannot be used "
            "with email."
        )
    return None


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class _Slow:
    """The per-string path (steps 2-4 of the module docstring), with the per-domain memo."""

    def __init__(self, allow_smtputf8: bool) -> None:
        self.allow_smtputf8 = allow_smtputf8
        self.domains: dict[str, Any] = {}

    def full(self, address: str) -> Result:
        return validate_one(address, allow_smtputf8=self.allow_smtputf8)

    def domain(self, domain: str) -> Any:
        hit = self.domains.get(domain)
        if hit is None:
            result = validate_one("a@" + domain)
            if result[0]:
                hit = (result[2], result[7])
            elif result[6] is not None and result[6].startswith("The email address is too long") \
                    and "after the @-sign" not in result[6]:
                hit = _FULL  # a length limit of the whole address: decide it as a whole
            else:
                hit = result[6]
            self.domains[domain] = hit
        return hit

    def local(self, local: str) -> tuple[str, str | None, bool] | str:
        """(local_part, ascii_local_part, smtputf8) as validate_email makes them, or the error."""
        if local.isascii():
            error = _ascii_local_error(local)
            if error is not None:
                return error
            lowered = local.lower()
            out = lowered if lowered in _CASE_INSENSITIVE else local
            return (out, out, False)
        options = {"allow_smtputf8": self.allow_smtputf8, "allow_empty_local": False,
                   "quoted_local_part": False, "strict": False}
        try:
            info = validate_email_local_part(local, **options)
        except EmailNotValidError as exc:
            return str(exc)
        smtputf8 = bool(info["smtputf8"])
        normalized = unicodedata.normalize("NFC", local)
        if normalized != local:
            try:
                info = validate_email_local_part(normalized, **options)
            except EmailNotValidError as exc:
                return "After Unicode normalization: " + str(exc)
        local_part, ascii_local = info["local_part"], info["ascii_local_part"]
        if ascii_local is not None and ascii_local.lower() in _CASE_INSENSITIVE:
            local_part, ascii_local = local_part.lower(), ascii_local.lower()
        return (local_part, ascii_local, smtputf8)

    def __call__(self, s: str) -> Result:
        if '"' in s or "<" in s:
            return self.full(s)
        at = s.find("@")
        if at < 0:
            if s.isascii():
                return _invalid("An email address must have an @-sign.")
            return self.full(s)  # email-validator names look-alike at-signs
        local, domain = s[:at], s[at + 1 :]
        local_info = self.local(local)
        if isinstance(local_info, str):
            return _invalid(local_info)
        local_out, ascii_local, smtputf8 = local_info
        if not domain:
            return _invalid("There must be something after the @-sign.")
        bracketed = domain.startswith("[") and domain.endswith("]")
        if domain.isascii() and "--" not in domain and not bracketed:
            error = _ascii_domain_error(domain)
            if error is not None:
                return _invalid(error)
            unicode_domain = ascii_domain = domain.lower()
        else:
            hit = self.domain(domain)
            if hit is _FULL:
                return self.full(s)
            if isinstance(hit, str):
                return _invalid(hit)
            unicode_domain, ascii_domain = hit
        normalized = f"{local_out}@{unicode_domain}"
        ascii_email = f"{ascii_local}@{ascii_domain}" if ascii_local else None
        longest = max(
            _utf8_len(s),
            _utf8_len(normalized),
            _utf8_len(f"{ascii_local or local_out}@{ascii_domain}"),
        )
        if longest > _MAX_ADDRESS:
            return self.full(s)  # email-validator words length errors with byte counts
        return (
            True, local_out, unicode_domain, normalized, ascii_email, smtputf8, None, ascii_domain
        )


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _fast_valid(addresses: pa.Array) -> np.ndarray:
    """Mask of addresses the vectorized rule accepts (each one valid, see the module docstring)."""
    ok = pc.and_(
        pc.match_substring_regex(addresses, _FAST_PATTERN),
        pc.less_equal(pc.binary_length(addresses), _MAX_ADDRESS),
    )
    # "--" anywhere (not only after the @) is rare: such addresses take the exact slow path.
    ok = _mask(pc.and_(ok, pc.invert(pc.match_substring(addresses, "--"))))
    # Special-use names (read at call time: email-validator lets callers change the list). A
    # name with upper-case letters never matches email-validator's lower-cased domain.
    names = [re.escape(d) for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d == d.lower()]
    if names:
        pattern = "[.@](?:" + "|".join(names) + ")$"
        ok &= ~_mask(pc.match_substring_regex(addresses, pattern, ignore_case=True))
    return ok


def _mailbox_names(addresses: pa.Array) -> np.ndarray:
    """Mask of addresses whose local part is an RFC 2142 name in some case (lower-cased)."""
    names = "|".join(sorted(_CASE_INSENSITIVE))
    return _mask(pc.match_substring_regex(addresses, f"^(?:{names})@", ignore_case=True))


def _with_validity(values: pa.Array, valid: np.ndarray) -> pa.Array:
    """``values`` with nulls where ``valid`` is false, sharing its data (no copy of the strings)."""
    if values.null_count:
        valid = valid & ~_mask(values.is_null())
    if values.offset:
        values = pa.concat_arrays([values])  # buffers must start at the array's first value
    bitmap = pa.array(valid, type=pa.bool_()).buffers()[1]
    return pa.Array.from_buffers(values.type, len(values), [bitmap, *values.buffers()[1:]])


def validate_many(
    addresses: pa.Array,
    /,
    *,
    allow_smtputf8: bool = True,
    progress: bool = False,
) -> Verdicts:
    """email-validator's syntax verdict for every string of ``addresses`` (no nulls).

    Repeated strings outside the fast path are checked once. With ``progress``, more than
    ``_PROGRESS_FROM`` of them show a ``tqdm.auto`` bar once they take over a second.
    """
    n = len(addresses)
    addresses = addresses.cast(_STR)
    if n == 0:
        empty = pa.array([], _STR)
        none = np.zeros(0, dtype=bool)
        return Verdicts(none, none, empty, empty, empty, empty, empty, empty)
    fast = _fast_valid(addresses)
    rest_idx = np.flatnonzero(~fast)
    slow = _Slow(allow_smtputf8)
    memo: dict[str, Result] = {}
    results: list[Result] = []
    bar = None
    if progress and len(rest_idx) > _PROGRESS_FROM:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(rest_idx), desc="Checking addresses", unit="address", delay=_PROGRESS_DELAY
        )
    try:
        for i, s in enumerate(addresses.take(pa.array(rest_idx)).to_pylist()):
            result = memo.get(s)
            if result is None:
                result = memo[s] = slow(s)
            results.append(result)
            if bar is not None and (i + 1) % 1000 == 0:
                bar.update(1000)
    finally:
        if bar is not None:
            bar.update(len(results) % 1000)
            bar.close()

    valid = fast.copy()
    valid[rest_idx] = [r[0] for r in results]
    smtputf8 = np.zeros(n, dtype=bool)
    smtputf8[rest_idx] = [r[5] for r in results]

    # One split does every row: the slow rows (and the fast ones with an RFC 2142 local part,
    # which email-validator lower-cases) are first replaced by their normalized form, which has
    # exactly one "@" (quoted local parts and IP literals are never valid here); an invalid row
    # by a bare "@". Only the domain still needs lower-casing after the split.
    redo = ~fast
    mailbox = _mailbox_names(addresses) & fast
    redo |= mailbox
    split = addresses
    if redo.any():
        by_row = dict(zip(rest_idx.tolist(), results, strict=True))
        subst = []
        for i, text in zip(
            np.flatnonzero(redo).tolist(),
            addresses.filter(pa.array(redo)).to_pylist(),
            strict=True,
        ):
            r = by_row.get(i)
            if r is None:  # a fast row with a mailbox name
                local, _, domain = text.partition("@")
                subst.append(f"{local.lower()}@{domain}")
            else:
                subst.append(f"{r[1]}@{r[2]}" if r[0] else "@")
        split = pc.replace_with_mask(addresses, pa.array(redo), pa.array(subst, _STR))
    parts = pc.split_pattern(split, "@", max_splits=1)
    local = _with_validity(pc.list_element(parts, 0), valid)
    domain = _with_validity(pc.ascii_lower(pc.list_element(parts, 1)), valid)
    normalized = pc.binary_join_element_wise(local, domain, pa.scalar("@", _STR))

    # The ASCII forms differ from the normalized ones only on some slow rows (IDN domains,
    # SMTPUTF8 local parts).
    ascii_domain, ascii_email = domain, normalized
    differs_domain = np.zeros(n, dtype=bool)
    differs_email = np.zeros(n, dtype=bool)
    for i, r in zip(rest_idx.tolist(), results, strict=True):
        if r[0]:
            differs_domain[i] = r[7] != r[2]
            differs_email[i] = r[4] != r[3]
    if differs_domain.any():
        values = [r[7] for i, r in zip(rest_idx, results, strict=True) if differs_domain[i]]
        ascii_domain = pc.replace_with_mask(
            domain, pa.array(differs_domain), pa.array(values, _STR)
        )
    if differs_email.any():
        values = [r[4] for i, r in zip(rest_idx, results, strict=True) if differs_email[i]]
        ascii_email = pc.replace_with_mask(
            normalized, pa.array(differs_email), pa.array(values, _STR)
        )

    # Messages: a take from the few distinct ones (cheap), null on valid rows.
    texts: list[str] = []
    number: dict[str, int] = {}
    which = np.full(n, -1, dtype=np.int64)
    for i, r in zip(rest_idx.tolist(), results, strict=True):
        if not r[0] and r[6] is not None:
            which[i] = number.setdefault(r[6], len(number))
    texts = list(number)
    message = pa.array(texts, _STR).take(pa.array(which, mask=which < 0)) if texts \
        else pa.nulls(n, _STR)
    return Verdicts(
        valid=valid,
        smtputf8=smtputf8,
        normalized=normalized,
        local=local,
        domain=domain,
        ascii_email=ascii_email,
        message=message,
        ascii_domain=ascii_domain,
    )
