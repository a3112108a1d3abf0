"""The key one mailbox goes by: how the send engine and the journal tell addresses apart.

One function, :func:`address_key`, decides when two spellings are the same recipient; the
send engine dedupes rows with it, names recipients in the journal with it (``rkey``, VERP
tokens, Message-IDs), matches recorded hard bounces and complaints with it, and
``smtpkit.suppressions`` lists addresses by it. The key is the address as it goes into the
envelope (``RCPT TO``), made comparable:

* the domain in IDNA A-labels, lower case (``bücher.example`` and ``xn--bcher-kva.example``
  are one domain, as in the envelope);
* the local part in Unicode NFC (the composed and decomposed spellings of ``zoë`` are one
  mailbox, RFC 6531) and lower case.

Lower case, not Unicode case folding: mail servers that ignore case in local parts lower-case
them (``STRASSE`` and ``straße`` are different mailboxes there), and it is what
``smtpkit.clean`` dedupes and suppresses by, so a cleaned frame and the send engine agree.

:func:`address_keys` is the same for a whole column: Arrow's lower-casing for ASCII cells
(where it is exactly :func:`address_key`), the function itself for the rest.

Example:
    >>> address_key("Ann@Bücher.Example") == address_key("ann@xn--bcher-kva.example")
    True
    >>> address_key("zoe\\u0308@example.com") == address_key("zo\\u00eb@example.com")
    True
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from ._compose_headers import ascii_domain

__all__ = ["address_key", "address_keys"]


def address_key(address: str, /) -> str:
    """The comparable envelope form of ``address``: NFC lower-case local part, A-label domain.

    An address whose domain is not a valid IDNA host name keeps that domain in NFC lower case
    (it cannot be sent to anyway; the key still compares it sensibly).

    Example:
        >>> address_key("ANN@Example.COM"), address_key("Zoë@BÜCHER.example")
        ('ann@example.com', 'zoë@xn--bcher-kva.example')
    """
    if address.isascii():
        return address.lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return _fold(address)
    if not domain.isascii():
        domain = ascii_domain(unicodedata.normalize("NFC", domain)) or domain
    return f"{_fold(local)}@{_fold(domain)}"


def _fold(text: str) -> str:
    # lower-casing can leave a string that is not in NFC (and NFC can re-case nothing), so
    # normalize on both sides: the key of a key is the key itself
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower())


def address_keys(values: pd.Series, /) -> pd.Series:
    """:func:`address_key` of every cell of a string Series (NA stays NA), same index.

    Example:
        >>> address_keys(pd.Series(["A@X.com", "ann@bücher.example", None], dtype="string")
        ...              ).tolist()
        ['a@x.com', 'ann@xn--bcher-kva.example', <NA>]
    """
    text = values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")
    keys = text.str.lower()  # an Arrow kernel: no Python string per row
    other = np.flatnonzero(~text.str.isascii().fillna(True).to_numpy(dtype=bool))
    if len(other):
        folded = pd.array([address_key(v) for v in text.iloc[other].tolist()], dtype="string")
        keys.iloc[other] = folded  # type: ignore[call-overload]  # an array: by position
    return keys
