"""Read bounces, complaints and auto-replies back, classify them, and fold them into outcomes.

A ``250`` is not delivery: failures arrive later as mail. ``read_bounces`` reads them from a
``.eml`` file or folder, an mbox file, a Maildir (such as the Sandbox's ``box.mailbox``) or an
IMAP folder (:class:`IMAPSource`) into a frame with one row per recipient a report is about;
``apply_bounces`` joins that frame into an outcome frame; ``suppressions`` lists the addresses
that must not be mailed again.

What is recognized, in this order (the first that applies wins):

1. RFC 5965 ARF feedback reports (``multipart/report; report-type=feedback-report``):
   ``kind="complaint"``. The recipient is ``Original-Rcpt-To`` (else the reported message's
   ``To``); ``bounce_to`` is ``Original-Mail-From`` (else the reported message's
   ``Return-Path``), because feedback loops report to a fixed address, not to the VERP sender.
2. RFC 3464 delivery status notifications (``message/delivery-status``), also when wrapped in
   another message: one row per recipient block. ``Original-Recipient`` is preferred to
   ``Final-Recipient`` (it is the address we sent to, before aliasing). ``Action`` decides the
   kind (``failed`` -> bounce, ``delayed`` -> delay, ``delivered``/``relayed``/``expanded`` ->
   delivered); without an Action the status class does (4 -> delay, 5 -> bounce). Action wins
   over the status class because it states what the reporting MTA did: ``failed`` with 4.4.7
   means it gave up for good.
3. RFC 3834 automatic replies (``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
   ``Precedence: auto_reply``, out-of-office subjects) that do not come from a mailer daemon:
   ``kind="auto_reply"``, never a failure.
4. Non-standard bounce text (Postfix, Exim, Sendmail, qmail, Exchange, Gmail, Yahoo, AOL,
   MDaemon, Lotus Domino, GroupWise, ...): generic rules that find the failed addresses in the
   notice (see ``smtpkit._bounce_text``); a delay when the notice says delivery goes on.
5. Anything else is one row with ``kind="unparsed"`` and a ``reason`` (``not_a_bounce``,
   ``malformed``, ``parse_error``). No exception escapes for any input: malformed MIME, unknown
   charsets, truncated or binary data. Of a message bigger than ``MAX_PARSE_BYTES`` only the
   head is read (reports and notices come first, the returned original last).

When the status code and the text disagree, the text decides the ``reason``: MTAs often send
a generic or wrong enhanced code (Postfix's ``5.0.0`` for everything, ``5.3.0`` with "No such
user", ``5.7.1`` for any refusal, Microsoft's ``5.1.10`` for an unknown recipient where RFC 7505
means a null MX), while the diagnostic names the actual situation. The code decides when the
text names no known situation; ``other`` when neither does. The code's class and the DSN
Action still decide bounce versus delay, and a reason is ``hard`` only on a permanent failure.

Reasons (``REASONS`` has the full text): ``user_unknown``, ``mailbox_disabled``,
``bad_address``, ``host_unknown`` (the four *hard* ones: suppress the address), ``mailbox_full``,
``message_too_large``, ``system_error``, ``network_error``, ``mail_loop``, ``expired``,
``blocked``, ``spam_detected``, ``virus_detected``, ``content_rejected``, ``policy``,
``auth_failure``, ``rate_limited``, ``greylisted``, ``other``; and ``delivered``, ``complaint``,
``auto_reply`` for the rows that are no failure. Complaints are always hard. A blocked or spam
failure is about our sending, not the address, so it is not hard.

Each row also says where it came from: ``source`` (the file path, ``mbox#key``, or an
``imap://user@host:port/folder;UIDVALIDITY=v/;UID=n`` URL) and ``format`` (``dsn``, ``arf``,
``rfc3834``, ``auto_reply``, or the MTA whose text was read: ``postfix``, ``exim``, ``qmail``,
``sendmail``, ``exchange``, ``office365``, ``gmail``, ``yahoo``, ``aol``, ... else ``text``).
An :class:`IMAPSource` remembers the folder's UIDVALIDITY and the last UID it returned (in the
object, and in ``state_file=`` across processes), so a second ``read_bounces`` returns only new
mail; it reads with ``BODY.PEEK[]`` on a read-only folder and never changes the mailbox.

Matching (``apply_bounces``): first VERP (the bounce's ``bounce_to`` against the outcome's
``envelope_sender``, by the ``+token`` or the whole address, case-insensitively), then the
original ``Message-ID``, then the recipient address. A report that matches no outcome row is an
*orphan*: it is never dropped but returned in ``result.attrs["orphans"]`` as a list of
records (plain dicts, so that ``pd.concat`` of results works); ``bounces_frame(orphans)`` makes
them a frame again.

Example:
    >>> raw = (b"From: MAILER-DAEMON@mx.example.net\\nTo: bounces+t1@example.com\\n"
    ...        b"Subject: Undelivered Mail\\n\\n<ann@example.net>: host mx said: 550 5.1.1 "
    ...        b"User unknown\\n")
    >>> [(r.recipient, r.kind, r.reason, r.hard) for r in parse_bounce(raw)]
    [('ann@example.net', 'bounce', 'user_unknown', True)]
    >>> verp_token("bounces+t1@example.com")
    't1'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.message
import mailbox
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd

from ._address_key import address_keys
from ._bounce_classify import HARD_REASONS, REASONS
from ._bounce_parse import MAX_PARSE_BYTES, BounceRecord, parse_message
from ._bounce_sources import IMAPSource, iter_messages
from .errors import InputError, JournalError, MissingColumnError

if TYPE_CHECKING:
    from .journal import Journal

#: Where reports are read from: a path (.eml file or folder, mbox, Maildir), a mailbox, or IMAP.
BounceSource: TypeAlias = "str | os.PathLike[str] | mailbox.Mailbox[Any] | IMAPSource"
#: A moment as ``since=`` takes it: a datetime or date, a pandas Timestamp or an ISO string.
Moment: TypeAlias = "dt.datetime | dt.date | pd.Timestamp | str"

__all__ = [
    "APPLIED_COLUMNS",
    "BOUNCE_COLUMNS",
    "HARD_REASONS",
    "KINDS",
    "MAX_PARSE_BYTES",
    "REASONS",
    "SUPPRESSION_COLUMNS",
    "BounceRecord",
    "IMAPSource",
    "apply_bounces",
    "bounces_frame",
    "parse_bounce",
    "read_bounces",
    "suppressions",
    "verp_token",
]

#: Every ``kind`` a row can have.
KINDS: tuple[str, ...] = ("bounce", "delay", "complaint", "auto_reply", "delivered", "unparsed")

_BOUNCE_DTYPES: dict[str, str] = {
    "recipient": "string",
    "original_message_id": "string",
    "kind": "string",
    "status": "string",
    "reply_code": "Int64",
    "diagnostic": "string",
    "reporting_mta": "string",
    "remote_mta": "string",
    "reason": "string",
    "hard": "boolean",
    "arrived_at": "datetime64[us, UTC]",
    "bounce_to": "string",
    "source": "string",
    "format": "string",
}
#: The columns of a bounce frame (``read_bounces``), in order.
BOUNCE_COLUMNS: tuple[str, ...] = tuple(_BOUNCE_DTYPES)

_APPLIED_DTYPES: dict[str, str] = {
    "bounce_kind": "string",
    "bounce_status": "string",
    "bounce_reply_code": "Int64",
    "bounce_reason": "string",
    "bounce_diagnostic": "string",
    "bounced_at": "datetime64[us, UTC]",
    "hard": "boolean",
    "bounce_matched_by": "string",
}
#: The columns ``apply_bounces`` adds to an outcome frame.
APPLIED_COLUMNS: tuple[str, ...] = tuple(_APPLIED_DTYPES)
#: The columns of ``suppressions``.
SUPPRESSION_COLUMNS: tuple[str, ...] = ("email", "reason", "kind", "when", "diagnostic")

# Which report wins when several match one outcome row (then the latest of them).
_PRIORITY = {"complaint": 5, "bounce": 4, "delay": 3, "auto_reply": 2, "delivered": 1}
_NEW_STATUS = {"bounce": "bounced", "complaint": "complained"}
# A report proves the server accepted the message, so an "unknown" outcome can change too.
_CHANGEABLE = frozenset({"sent", "unknown", "bounced", "complained"})
_EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")


def parse_bounce(message: bytes | str | email.message.Message, /) -> list[BounceRecord]:
    """The records one message holds: one per recipient it reports on (see module docstring).

    Never raises for bad input: a message that cannot be read is one ``kind="unparsed"`` record
    whose ``reason`` and ``diagnostic`` say why.

    Example:
        >>> parse_bounce(b"\\x00\\x01junk")[0].kind
        'unparsed'
    """
    return parse_message(message)


def bounces_frame(records: Iterable[BounceRecord | dict[str, Any]], /) -> pd.DataFrame:
    """A frame with ``BOUNCE_COLUMNS`` and their dtypes from bounce records.

    Example:
        >>> bounces_frame([BounceRecord("ann@example.com", "bounce", "user_unknown", True)]).shape
        (1, 14)
    """
    rows = [dataclasses.asdict(r) if isinstance(r, BounceRecord) else dict(r) for r in records]
    frame = pd.DataFrame.from_records(rows, columns=list(BOUNCE_COLUMNS))
    return _typed(frame, _BOUNCE_DTYPES)


def _typed(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    for column, dtype in dtypes.items():
        if dtype.startswith("datetime64"):
            frame[column] = pd.to_datetime(frame[column], utc=True).astype(
                dtype  # type: ignore[call-overload]
            )
        elif dtype == "boolean":
            frame[column] = frame[column].astype("boolean")
        else:
            frame[column] = frame[column].astype(dtype)  # type: ignore[call-overload]
    return frame


_DATE_HELP = "{name} must be a date or datetime such as '2026-01-31'; got {value!r}."


def _utc(value: Any, name: str) -> dt.datetime:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise InputError(_DATE_HELP.format(name=name, value=value)) from exc
    if stamp is pd.NaT:
        raise InputError(_DATE_HELP.format(name=name, value=value))
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def read_bounces(source: BounceSource, /, *, since: Moment | None = None) -> pd.DataFrame:
    """Read every report in ``source`` into a bounce frame (``BOUNCE_COLUMNS``, one row each).

    ``source`` is a path to a ``.eml`` file, a folder of ``.eml`` files, an mbox file or a
    Maildir (``cur/`` and ``new/``), a ``mailbox.Mailbox``, or an :class:`IMAPSource` (which
    returns only messages it has not returned before). ``since`` (a date, datetime or ISO
    string; naive means UTC) keeps the reports that arrived then or later; a report without a
    readable date is kept.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.eml").write_bytes(
        ...     b"From: MAILER-DAEMON@mx.example.net\\nTo: bounces+t1@example.com\\n"
        ...     b"Subject: failure notice\\n\\n<ann@example.net>:\\nmailbox is full\\n")
        >>> read_bounces(folder)[["recipient", "kind", "reason"]].values.tolist()
        [['ann@example.net', 'bounce', 'mailbox_full']]
    """
    cutoff = _utc(since, "since") if since is not None else None
    if isinstance(source, IMAPSource):
        messages = source.fetch(since=cutoff)
    else:
        messages = iter_messages(source)
    records: list[BounceRecord] = []
    for raw, label in messages:
        for record in parse_message(raw, source=label):
            if cutoff is not None and record.arrived_at is not None and record.arrived_at < cutoff:
                continue
            records.append(record)
    return bounces_frame(records)


def verp_token(address: Any, /) -> str | None:
    """The VERP token of an envelope sender such as ``bounces+<token>@example.com``, or None.

    Example:
        >>> verp_token("Bounces+A1b2@Example.com"), verp_token("news@example.com")
        ('A1b2', None)
    """
    if not isinstance(address, str) or "@" not in address:
        return None
    local = address.strip().strip("<>").rpartition("@")[0]
    _, plus, token = local.partition("+")
    return token if plus and token else None


def _require(frame: Any, columns: Iterable[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame; got {type(frame).__name__}.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"The {what} has no column {', '.join(repr(c) for c in missing)}; it has "
            f"{', '.join(repr(c) for c in frame.columns) or 'no columns'}."
        )


def _key(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().strip("<>").strip().lower()
    return value or None


def _index(values: Iterable[Any], keyer: Any = _key) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for position, value in enumerate(values):
        key = keyer(value)
        if key is not None:
            index.setdefault(key, []).append(position)
    return index


def apply_bounces(
    outcomes: pd.DataFrame,
    bounces: pd.DataFrame,
    /,
    *,
    journal: Journal | str | os.PathLike[str] | None = None,
    campaign: str | None = None,
) -> pd.DataFrame:
    """A new outcome frame with the reports in ``bounces`` folded in (the inputs are untouched).

    Each outcome row gets ``APPLIED_COLUMNS`` from the most important report that matches it
    (complaint, then bounce, delay, auto-reply, delivered; the latest among equals). A matched
    ``sent`` (or ``unknown``) row becomes ``bounced`` or ``complained`` and its ``reason`` the
    report's reason; delays and auto-replies only add the columns. Matching goes VERP token,
    then Message-ID, then recipient; reports matching nothing are in ``result.attrs["orphans"]``
    (a list of records; ``bounces_frame(result.attrs["orphans"])`` is the frame).
    With ``journal=`` (a path or a ``Journal``) the reports are also recorded in the journal
    (idempotently) under ``campaign=`` (None when unknown: they then match by VERP or
    Message-ID), so that ``smtpkit.outcomes(journal, campaign)`` shows them later.

    Example:
        >>> from smtpkit.outcomes import outcomes_frame
        >>> sent = outcomes_frame([{"recipient": "ann@example.net", "status": "sent",
        ...                         "envelope_sender": "bounces+t1@example.com"}])
        >>> report = bounces_frame([BounceRecord(None, "bounce", "user_unknown", True,
        ...                                      bounce_to="bounces+t1@example.com")])
        >>> apply_bounces(sent, report).loc[0, ["status", "bounce_reason"]].tolist()
        ['bounced', 'user_unknown']
    """
    _require(outcomes, ["recipient", "status"], "outcome frame")
    _require(bounces, ["recipient", "kind"], "bounce frame")
    recorder = _journal(journal) if journal is not None else None
    result = outcomes.copy()
    size = len(result)
    by_token: dict[str, list[int]] = {}
    by_sender: dict[str, list[int]] = {}
    if "envelope_sender" in result.columns:
        senders = result["envelope_sender"].tolist()
        by_token = _index(senders, lambda v: (verp_token(v) or "").lower() or None)
        by_sender = _index(senders)
    by_id = _index(result["message_id"].tolist()) if "message_id" in result.columns else {}
    recipients = result["recipient"].tolist()
    by_rcpt = _index(recipients)

    def column(name: str) -> list[Any]:
        if name in bounces.columns:
            return [None if _missing(v) else v for v in bounces[name].tolist()]
        return [None] * len(bounces)

    b_rcpt, b_kind, b_to = column("recipient"), column("kind"), column("bounce_to")
    b_mid, b_when = column("original_message_id"), column("arrived_at")
    b_status, b_code, b_reason = column("status"), column("reply_code"), column("reason")
    b_diag, b_hard = column("diagnostic"), column("hard")

    best: dict[int, tuple[tuple[int, Any], int, str]] = {}
    orphans: list[int] = []
    for i in range(len(bounces)):
        rows, how = _match(
            b_to[i], b_mid[i], b_rcpt[i], by_token, by_sender, by_id, by_rcpt, recipients
        )
        if not rows:
            orphans.append(i)
            continue
        when = pd.Timestamp(b_when[i]) if b_when[i] is not None else _EARLIEST
        rank = (_PRIORITY.get(str(b_kind[i]), 0), when)
        for row in rows:
            if row not in best or rank >= best[row][0]:
                best[row] = (rank, i, how)

    applied: dict[str, list[Any]] = {name: [None] * size for name in APPLIED_COLUMNS}
    status = result["status"].tolist()
    reason = result["reason"].tolist() if "reason" in result.columns else [None] * size
    for row, (_, i, how) in best.items():
        kind = str(b_kind[i])
        applied["bounce_kind"][row] = kind
        applied["bounce_status"][row] = b_status[i]
        applied["bounce_reply_code"][row] = b_code[i]
        applied["bounce_reason"][row] = b_reason[i]
        applied["bounce_diagnostic"][row] = b_diag[i]
        applied["bounced_at"][row] = b_when[i]
        applied["hard"][row] = bool(b_hard[i]) if b_hard[i] is not None else False
        applied["bounce_matched_by"][row] = how
        new = _NEW_STATUS.get(kind)
        if new and status[row] in _CHANGEABLE and not (
            status[row] == "complained" and new == "bounced"
        ):
            status[row] = new
            reason[row] = b_reason[i]
    result["status"] = pd.Series(status, index=result.index, dtype="object").astype(
        result["status"].dtype
    )
    reason_dtype = result["reason"].dtype if "reason" in result.columns else "string"
    result["reason"] = pd.Series(reason, index=result.index, dtype="object").astype(
        reason_dtype  # type: ignore[arg-type]
    )
    for name, dtype in _APPLIED_DTYPES.items():
        values = pd.Series(applied[name], index=result.index, dtype="object")
        if dtype.startswith("datetime64"):
            result[name] = pd.to_datetime(values, utc=True).astype(
                dtype  # type: ignore[call-overload]
            )
        else:
            result[name] = values.astype(dtype)  # type: ignore[call-overload]
    # plain records (no frame, no NA) so that pd.concat and copies can compare attrs
    unmatched = bounces.iloc[orphans].astype(object)
    unmatched = unmatched.where(unmatched.notna(), None)
    result.attrs = dict(result.attrs)
    result.attrs["orphans"] = unmatched.to_dict("records")
    if recorder is not None:
        recorder.record_bounces(campaign, bounces)
    return result


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _match(
    bounce_to: Any,
    message_id: Any,
    recipient: Any,
    by_token: dict[str, list[int]],
    by_sender: dict[str, list[int]],
    by_id: dict[str, list[int]],
    by_rcpt: dict[str, list[int]],
    recipients: list[Any],
) -> tuple[list[int], str]:
    token = (verp_token(bounce_to) or "").lower()
    if token and token in by_token:
        return by_token[token], "verp"
    sender = _key(bounce_to)
    if sender and token and sender in by_sender:
        return by_sender[sender], "verp"
    mid = _key(message_id)
    if mid and mid in by_id:
        rows = by_id[mid]
        rcpt = _key(recipient)
        if len(rows) > 1 and rcpt:  # one message to several recipients: narrow it down
            narrowed = [r for r in rows if _key(recipients[r]) == rcpt]
            rows = narrowed or rows
        return rows, "message_id"
    rcpt = _key(recipient)
    if rcpt and rcpt in by_rcpt:
        return by_rcpt[rcpt], "recipient"
    return [], ""


def _journal(journal: Any) -> Any:
    if hasattr(journal, "record_bounces") and hasattr(journal, "bounces"):
        return journal
    if isinstance(journal, str | os.PathLike):
        try:
            from .journal import Journal
        except ImportError as exc:  # pragma: no cover - the journal module ships with smtpkit
            raise JournalError("The campaign journal module is not available.") from exc
        opened = Journal(journal)
        if hasattr(opened, "record_bounces") and hasattr(opened, "bounces"):
            return opened
    raise JournalError(
        f"journal= must be a journal file path or a Journal that can record bounces; got "
        f"{type(journal).__name__}."
    )


def suppressions(journal: Journal | str | os.PathLike[str] | pd.DataFrame, /) -> pd.DataFrame:
    """The addresses that must not be mailed again: hard bounces and complaints, one row each.

    ``journal`` is a journal path or ``Journal`` (all its recorded reports), or a bounce frame
    such as ``read_bounces`` returns. Columns: ``SUPPRESSION_COLUMNS`` (``email`` as the send
    engine keys addresses: lower case, NFC, the domain in IDNA A-labels, so that the spellings
    of one address are one row; the ``reason``, ``kind`` and ``when`` of the latest report
    that suppresses it). Feed it to ``clean(..., suppress=...)``; ``send`` reads the journal's
    reports itself, by the same key.

    Example:
        >>> frame = bounces_frame([BounceRecord("Ann@Example.net", "bounce", "user_unknown", True),
        ...                        BounceRecord("ann@bücher.example", "complaint", "complaint",
        ...                                     True),
        ...                        BounceRecord("bob@example.net", "delay", "mailbox_full")])
        >>> suppressions(frame)["email"].tolist()
        ['ann@example.net', 'ann@xn--bcher-kva.example']
    """
    if isinstance(journal, pd.DataFrame):
        frame = journal
    else:
        frame = _journal(journal).bounces()
    _require(frame, ["recipient", "kind"], "bounce frame")
    hard = frame["hard"].fillna(False).astype(bool) if "hard" in frame.columns else False
    kind = frame["kind"].astype("string")
    keep = frame[((kind == "bounce") & hard) | (kind == "complaint")]
    keep = keep[keep["recipient"].notna()]
    rows = pd.DataFrame(
        {
            "email": address_keys(keep["recipient"].astype("string").str.strip()),
            "reason": keep["reason"].astype("string") if "reason" in keep.columns else pd.NA,
            "kind": keep["kind"].astype("string"),
            "when": keep["arrived_at"] if "arrived_at" in keep.columns else pd.NaT,
            "diagnostic": keep["diagnostic"].astype("string")
            if "diagnostic" in keep.columns
            else pd.NA,
        }
    )
    rows = rows.sort_values("when", kind="stable", na_position="first")
    rows = rows.drop_duplicates("email", keep="last").sort_values("email", kind="stable")
    rows = rows.reset_index(drop=True)
    rows["when"] = pd.to_datetime(rows["when"], utc=True).astype("datetime64[us, UTC]")
    return rows[list(SUPPRESSION_COLUMNS)]
