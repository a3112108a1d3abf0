"""Split a contact frame into named segments, and into ordered batches.

``segment(frame, by=...)`` labels each row from a column's values; ``rules=`` from named
conditions (first match wins, the rest are ``other``); ``split=`` at random for A/B tests,
seeded and stable per address: the same address lands in the same arm on every run and
machine, whatever the row order. The result is a new frame with a ``segment`` column, which
``send(..., segment="segment")`` uses to send segment by segment with their own templates.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"email": ["a@x.com", "b@x.com", "c@x.com"],
    ...                       "plan": ["enterprise", "free", "pro"]})
    >>> segment(frame, rules={"vip": "plan == 'enterprise'", "paying": "plan != 'free'"}
    ...         )["segment"].tolist()
    ['vip', 'other', 'paying']
    >>> [len(b) for b in batches(frame, 2)]
    [2, 1]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError, MissingColumnError

__all__ = [
    "DEFAULT_SEGMENT",
    "SEGMENT_COLUMN",
    "address_column",
    "batches",
    "group_positions",
    "require_unique_columns",
    "segment",
]

#: The column ``segment`` adds.
SEGMENT_COLUMN = "segment"
#: The segment of rows no rule (or no split arm) claims.
DEFAULT_SEGMENT = "other"
_ADDRESS_COLUMNS = ("email_normalized", "email")


def require_unique_columns(frame: pd.DataFrame, /) -> None:
    """Raise ``InputError`` naming the column names that appear more than once in ``frame``
    (which of them a row's value comes from would be a guess).

    Example:
        >>> require_unique_columns(pd.DataFrame([[1, 2]], columns=["a", "a"]))
        Traceback (most recent call last):
        ...
        smtpkit.errors.InputError: The frame has more than one column named 'a', so it is not \
clear which one to use; rename or drop the extra ones (frame.loc[:, \
~frame.columns.duplicated()] keeps the first of each) and try again.
    """
    if frame.columns.is_unique:
        return
    repeated = list(dict.fromkeys(frame.columns[frame.columns.duplicated()]))
    raise InputError(
        f"The frame has more than one column named {', '.join(map(repr, repeated))}, so it is "
        "not clear which one to use; rename or drop the extra ones (frame.loc[:, "
        "~frame.columns.duplicated()] keeps the first of each) and try again."
    )


def address_column(frame: pd.DataFrame, /) -> str:
    """The column holding the addresses: ``email_normalized`` (from ``clean``), else ``email``."""
    for name in _ADDRESS_COLUMNS:
        if name in frame.columns:
            return name
    raise MissingColumnError(
        "The frame has no 'email_normalized' or 'email' column; rename the address column to "
        f"'email' (it has: {', '.join(map(str, frame.columns)) or 'no columns'})."
    )


def segment(
    frame: pd.DataFrame,
    /,
    *,
    by: str | None = None,
    rules: Mapping[str, str] | None = None,
    split: Mapping[str, float] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A copy of ``frame`` with a ``segment`` column (strings).

    Give exactly one of:
        by: a column whose values name the segments (missing values become ``other``).
        rules: ``{name: condition}`` with pandas ``query`` conditions such as
            ``"plan == 'enterprise' and country == 'DE'"``; the first rule a row matches wins.
        split: ``{arm: share}`` such as ``{"A": 0.5, "B": 0.5}``; shares are at most 1 in total
            (the rest is ``other``). An address always lands in the same arm for one ``seed``.

    Example:
        >>> import pandas as pd
        >>> f = pd.DataFrame({"email": [f"u{i}@x.com" for i in range(1000)]})
        >>> arms = segment(f, split={"A": 0.5, "B": 0.5}, seed=7)["segment"]
        >>> sorted(arms.unique()), 400 < (arms == "A").sum() < 600
        (['A', 'B'], True)
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"segment() takes a DataFrame, not {type(frame).__name__}.")
    require_unique_columns(frame)
    given = [name for name, value in (("by", by), ("rules", rules), ("split", split))
             if value is not None]
    if len(given) != 1:
        raise ConfigError(
            "segment() needs exactly one of by=, rules= or split=; "
            + (f"got {' and '.join(given)}." if given else "got none.")
        )
    if by is not None:
        labels = _from_column(frame, by)
    elif rules is not None:
        labels = _from_rules(frame, rules)
    else:
        assert split is not None
        labels = _from_split(frame, split, seed)
    result = frame.copy()
    result[SEGMENT_COLUMN] = pd.array(labels, dtype="string")
    return result


def _from_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise MissingColumnError(
            f"segment(by={column!r}): there is no such column; the frame has "
            f"{', '.join(map(str, frame.columns))}."
        )
    values = frame[column]
    text = values.astype("string").fillna(DEFAULT_SEGMENT)
    text = text.mask(text.str.strip() == "", DEFAULT_SEGMENT)
    return text.to_numpy(dtype=object)


def _from_rules(frame: pd.DataFrame, rules: Mapping[str, str]) -> np.ndarray:
    if not isinstance(rules, Mapping) or not rules:
        raise ConfigError("rules must be a non-empty dict of {segment name: condition}.")
    labels = np.full(len(frame), DEFAULT_SEGMENT, dtype=object)
    unclaimed = np.ones(len(frame), dtype=bool)
    for name, condition in rules.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"A segment name must be a non-empty string, not {name!r}.")
        if not isinstance(condition, str):
            raise ConfigError(f"The condition of segment {name!r} must be a string such as "
                              f"\"plan == 'enterprise'\", not {type(condition).__name__}.")
        try:
            matched = frame.eval(condition)
        except Exception as exc:
            raise InputError(
                f"The condition of segment {name!r} ({condition!r}) cannot be evaluated: {exc}. "
                "Write it as a pandas query, e.g. \"plan == 'enterprise'\"."
            ) from None
        if not isinstance(matched, pd.Series) or not (
            pd.api.types.is_bool_dtype(matched) or matched.isna().all()
        ):
            raise InputError(
                f"The condition of segment {name!r} ({condition!r}) does not give True/False "
                "per row; compare a column with a value, e.g. \"plan == 'enterprise'\"."
            )
        hit = matched.fillna(False).to_numpy(dtype=bool) & unclaimed
        labels[hit] = name
        unclaimed &= ~hit
    return labels


def _from_split(frame: pd.DataFrame, split: Mapping[str, float], seed: int) -> np.ndarray:
    if not isinstance(split, Mapping) or not split:
        raise ConfigError('split must be a non-empty dict of {arm: share}, e.g. {"A": 0.5, '
                          '"B": 0.5}.')
    names, shares = [], []
    for name, share in split.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"A split arm name must be a non-empty string, not {name!r}.")
        if isinstance(share, bool) or not isinstance(share, int | float) or not (
            math.isfinite(share) and share > 0
        ):
            raise ConfigError(f"The share of arm {name!r} must be a number above 0, not "
                              f"{share!r}.")
        names.append(name)
        shares.append(float(share))
    total = sum(shares)
    if total > 1.0 + 1e-9:
        raise ConfigError(f"The split shares add up to {total:g}; they may add up to 1 at most.")
    column = address_column(frame)
    edges = np.cumsum(shares)
    draws = np.array([_uniform(seed, v) for v in frame[column].tolist()], dtype=float)
    index = np.searchsorted(edges, draws, side="right")
    labels = np.array([*names, DEFAULT_SEGMENT], dtype=object)[index]
    return labels


def _uniform(seed: int, address: object) -> float:
    """A number in [0, 1) fixed by (seed, address): the same on every run and machine."""
    key = "" if address is None or (isinstance(address, float) and math.isnan(address)) \
        else str(address).strip().casefold()
    digest = hashlib.blake2b(f"{seed}\0{key}".encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def batches(
    frame: pd.DataFrame, size: int, /, *, by: str | None = None
) -> list[pd.DataFrame]:
    """Split ``frame`` into consecutive batches of at most ``size`` rows, in order.

    With ``by`` (for example ``"segment"``) rows are grouped by that column, groups in order of
    first appearance (or category order), and a batch never mixes two groups.

    Example:
        >>> import pandas as pd
        >>> f = pd.DataFrame({"email": list("abcde"), "segment": list("ABABA")})
        >>> [b["segment"].tolist() for b in batches(f, 2, by="segment")]
        [['A', 'A'], ['A'], ['B', 'B']]
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"batches() takes a DataFrame, not {type(frame).__name__}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"The batch size must be a whole number of rows above 0, not {size!r}.")
    if by is None:
        return [frame.iloc[start : start + size] for start in range(0, len(frame), size)]
    require_unique_columns(frame)
    if by not in frame.columns:
        raise MissingColumnError(
            f"batches(by={by!r}): there is no such column; the frame has "
            f"{', '.join(map(str, frame.columns))}."
        )
    result: list[pd.DataFrame] = []
    for positions in group_positions(frame[by]):
        for start in range(0, len(positions), size):
            result.append(frame.iloc[positions[start : start + size]])
    return result


def group_positions(values: pd.Series, /) -> list[np.ndarray]:
    """Row positions per group, groups in category order or order of first appearance."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        present = [c for c in range(len(values.cat.categories)) if (codes == c).any()]
        groups = [np.flatnonzero(codes == c) for c in present]
        missing = np.flatnonzero(codes == -1)
        return groups + ([missing] if len(missing) else [])
    factorized, _ = pd.factorize(values, use_na_sentinel=False)
    order = np.argsort(factorized, kind="stable")
    counts = np.bincount(factorized)
    return [part for part in np.split(order, np.cumsum(counts)[:-1]) if len(part)]
