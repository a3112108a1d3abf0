"""Read the human-written part of a bounce: which addresses failed, and why, from plain text.

Private helper of :mod:`smtpkit.bounces` for the bounces that are not RFC 3464 reports: the
notices Postfix, Exim, Sendmail, qmail, Exchange, Gmail, Yahoo, MDaemon, Lotus Domino and many
smaller MTAs write for people. No per-vendor template is needed; the rules are generic:

1. The *notice* is the text before the returned copy of the original message (cut at phrases
   such as "Original message follows" / "Below this line is a copy of the message" or at the
   first line that is a mail header only an MTA writes, such as ``Received:``).
2. Every address in the notice is a candidate, except the bounce's own header addresses, the
   postmaster / mailer-daemon of any host, senders (``MAIL FROM:<x>``, "mail from x", "x...
   Sender ok"), header echoes ("To: list@example.org" quoted from the original) and contacts
   ("please contact x").
3. When some candidates stand where a failed recipient stands (alone on a line, at the start of
   a line, after "recipient:", "to", "for", on a line with an SMTP reply code or a failure word,
   or in the list after "the following addresses failed:"), only those are kept.
4. "(expanded from: x)", "(generated from x)" and "Originally addressed to x" name the address we
   sent to, which replaces the local alias it was expanded to.
5. With no address at all, a bare user name listed after a failure line is completed with the
   domain from the returned message's ``Received: ... for <user@domain>`` (else the bounce's
   From domain).

Example:
    >>> notice, _ = cut_notice("<ann@example.com>: user unknown\\n\\nReceived: from x\\n")
    >>> [f.address for f in find_recipients(notice)]
    ['ann@example.com']
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable

__all__ = [
    "Found",
    "cut_notice",
    "detect_format",
    "envelope_recipients",
    "extract_codes",
    "find_recipients",
    "html_to_text",
    "is_delay_text",
    "is_permanent_text",
    "looks_like_bounce",
]

_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]"
ADDRESS_RE = re.compile(
    rf"(?<![\w.!#$%&'*+/=?^`{{|}}~@-])({_ATEXT}+(?:\.{_ATEXT}+)*@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})(?![\w-])"
)
_X400_PREFIX = re.compile(r"^(?:smtp|rfc-?822)[=:]", re.IGNORECASE)
_SYSTEM_LOCALPARTS = frozenset(
    {
        "postmaster",
        "mailer-daemon",
        "mailer_daemon",
        "mailerdaemon",
        "mail.delivery.system",
        "mdaemon",
        "abuse",
        "hostmaster",
        "root",
    }
)

# Where the returned copy of the original message starts (the notice ends there).
# The bounce mailbox takes mail from anyone, so every pattern here must stay linear on hostile
# text: a quantified run is entered only at its start (a lookbehind) and taken whole (possessive
# or atomic), otherwise a long run is rescanned from each of its characters (quadratic time).
_CUT_PHRASES = re.compile(
    r"below this line is a copy|this is a copy of (?:the|your) message|(?:original|returned"
    r"|unsent|undelivered) (?:message|mail)s?,? (?:follows?|below|attached|as received|headers?)"
    r"|(?<!-)-{2,}+ ?(?:original|returned) (?:message|mail) ?-{2,}|message headers? follows?"
    r"|header of the original message|(?:copy|summary) of the (?:original |undelivered |first "
    r"part of the |returned )?message|start of returned message|your message reads"
    r"|original message follow|the header and top \d+ lines|message text follows|^old message:"
    r"|mensaje original|copy of the message header|message (?:header|headers) (?:is|are) "
    r"(?:attached|below)|attachment is a copy",
    re.IGNORECASE | re.MULTILINE,
)
_CUT_PHRASES_LOWER = re.compile(_CUT_PHRASES.pattern, re.MULTILINE)
_HEADER_LINE = re.compile(
    r"^>?[ \t]?(?:Received|Return-Path|Delivered-To|Message-I[dD]|DKIM-Signature|Received-SPF"
    r"|Authentication-Results|X-[A-Za-z0-9-]+):[ \t]",
    re.MULTILINE | re.IGNORECASE,
)

_ECHO_LINE = re.compile(
    r"^[ \t>]*(?:from|to|cc|bcc|sender|reply-to|errors-to|return-path|x-sender|subject|date"
    r"|sent|message-id|in-reply-to|references|x-original-to|delivered-to)[ \t]*:",
    re.IGNORECASE,
)
_SENDER_BEFORE = re.compile(
    r"(?:(?<![\w-])from|sender|envelope-from|return-path|errors-to|reply-to|message-id|msgid"
    r"|mailto)\s*[:=]?\s*[<\"'(\[]*\s*$",
    re.IGNORECASE,
)
_ORIGINAL_BEFORE = re.compile(
    r"(?:expanded|generated|forwarded|redirected|aliased) from\s*:?\s*[<\"'(\[]*\s*$"
    r"|originally addressed to\s*:?\s*[<\"'(\[]*\s*$|original[- ]recipient\s*:?\s*(?:rfc822;)?"
    r"\s*[<\"']*\s*$",
    re.IGNORECASE,
)
_CONTACT_BEFORE = re.compile(
    r"(?:contact|reply to|write to|send mail to|owner at|questions to|report (?:it|this) to"
    r"|information to)\b[^\n]{0,30}$",
    re.IGNORECASE,
)
_LIST_PUNCTUATION = " \t>*-|\"'<>:;,.()[]"  # bullets and brackets around a listed address
_LEAD_PUNCTUATION = " \t>*-|\"'<(["
#: How much of a line before / after an address the rules about its place read. Enough for any
#: label ("originally addressed to:", "please contact ... at"); bounded so that a line with
#: thousands of addresses costs linear time, not a rescan of the whole line for each address.
_CONTEXT_CHARS = 128
#: How many earlier hits on one row an "(expanded from: x)" looks through for its alias.
_MAX_ALIAS_SCAN = 64
_SENDER_OK_AFTER = re.compile(r"^[>\"'\]]*[.,]*\s*sender ok", re.IGNORECASE)
_MAIL_FROM = re.compile(r"mail from:?\s*<([^>\s]+)>", re.IGNORECASE)

_LABEL_BEFORE = re.compile(
    r"(?:recipients?|address(?:ee|ed)?|user(?:id)?|mailbox|\bto|\bfor|error-for|attempts"
    r"|account|delivered a|userid)\W{0,6}$",
    re.IGNORECASE,
)
_FAILURE_WORDS = re.compile(
    r"unknown|not found|no such|quota|full|reject|invalid|undeliver|failed|failure|does not"
    r"|doesn't|disabled|unavailable|not (?:be )?delivered|could not|couldn't|unable|error"
    r"|not listed|denied|refused|exceed|not exist|delayed|postponed|not recognized|no mailbox"
    r"|not reach",  # lower case, run on lower-cased lines
)
_REPLY_IN_LINE = re.compile(r"(?:^|[\s:(\[])[45]\d\d(?: |-(?=\d\.)|$)")
_INTRO_LINE = re.compile(
    r"following\s+(?:\w+\s+)?(?:recipients?|address(?:es|\(es\))?|users?|destinations?"
    r"|recipient\(s\)|address\(es\))|(?:recipients?|address(?:es)?|users?|\(s\)|\(es\)"
    r"|delivered to|deliver to|not reach)\s*:\s*$",  # lower case, run on lower-cased lines
)
_BARE_TOKEN = re.compile(
    r"^[ \t>*-]*[\"'<]?([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})[\"'>]?(?:\s*$|\s{2,}|\t|\s*:|\s+[\"(])"
)
_RCVD_FOR = re.compile(r"\bfor\s+<?([^\s<>;@]+@[^\s<>;]+?)>?\s*;", re.IGNORECASE)

_DELAY_RE = re.compile(
    r"has not yet been delivered|not yet been delivered|not been delivered yet"
    r"|will (?:continue to |keep )?"
    r"(?:re)?try|will be retried|continue (?:to )?(?:attempt|try)|attempts will continue"
    r"|still (?:being )?retr(?:y|ied)|still trying|warning message only|this is (?:just )?a "
    r"warning|advisory|\bdelayed\b|\bpostponed\b|temporarily deferred|no action is required"
    r"|delivery delay|\(delay\)",  # lower case, run on lower-cased text
)
_PERMANENT_RE = re.compile(
    r"permanent (?:fatal )?error|failed permanently|permanent(?:ly)? (?:delivery )?fail"
    r"|not going to try again|i've given up|giving up on|removed from the mail queue"
    r"|will not be retried|no further attempts",  # lower case, run on lower-cased text
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|returning message|delivery (?:status )?(?:notif"
    r"|failure|failed|problem|report|warning)|failure notice|failed mail|mail delivery|non[- ]"
    r"?delivery|could not be delivered|not delivered|delayed mail|message delayed|delivery "
    r"delay|warning: message|nondeliverable|mail system error|delivery failure|processing "
    r"error|mail error|bounce|rejected|user unknown",
    re.IGNORECASE,
)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|was not delivered|delivery "
    r"(?:to the following|has failed|failed|problem)|permanent (?:fatal )?error|unable to "
    r"deliver|not able to deliver|wasn't able to deliver|did not reach|following address"
    r"|has not (?:yet )?been delivered|returned to (?:the )?sender|delivery status notification"
    r"|message delayed|no such user|user unknown|could not deliver|failed recipient",
    re.IGNORECASE,
)
_SYSTEM_SENDER = re.compile(
    r"mailer-daemon|postmaster|mail delivery|mail administrator|mdaemon|system administrator"
    r"|delivery (?:subsystem|system|service)",
    re.IGNORECASE,
)
_ENHANCED = re.compile(r"(?:^|(?<=[\s#(\[:;'\"]))([45])\.(\d{1,3})\.(\d{1,3})(?=$|[\s)\],;:.'\"])")
_REPLY_CODE = re.compile(
    r"(?:^|[\s:(\[\"'])([45][0-5]\d)(?=[ -]\d\.\d|[ -]+[<A-Za-z#\[{(]|$)", re.MULTILINE
)

_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx))  # lower case, run on lower-cased text
    for name, rx in (
        ("gmail", r"googlemail|\bgmail\b|google\.com"),
        ("office365", r"outlook\.com|office ?365|protection\.outlook|onmicrosoft\.com"),
        ("exchange", r"did not reach (?:the following|some or all)|msexch|microsoft exchange"
         r"|delivery has failed to these recipients|diagnostic information for administrators"),
        ("amazon_ses", r"amazonses|amazon ses"),
        ("aol", r"\baol\.com"),
        ("yahoo", r"yahoo"),
        ("postfix", r"this is the [^\n]{0,60}program at host|\bpostfix\b"),
        ("exim", r"created automatically by mail delivery software|\bexim\b"),
        ("qmail", r"qmail|below this line is a copy of the message"),
        ("sendmail", r"the original message was received at|permanent fatal errors|transcript "
         r"of session follows"),
        ("mdaemon", r"mdaemon"),
        ("lotus_domino", r"domino"),
        ("groupwise", r"groupwise|novell"),
        ("interscan", r"interscan"),
        ("smtp32", r"smtpd?32"),
        ("lsmtp", r"\blsmtp\b"),
        ("hmailserver", r"hmailserver"),
    )
)


@dataclasses.dataclass(frozen=True)
class Found:
    """One failed recipient found in a notice: the address and the text that describes it."""

    address: str
    chunk: str


_SKIPPED_OPEN = re.compile(r"<(script|style|head)\b", re.IGNORECASE)
_SKIPPED_CLOSE = {
    name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in ("script", "style", "head")
}


def _drop_skipped_elements(markup: str) -> str:
    """``markup`` with every ``<script|style|head ...>...</same>`` element made one space.

    What the lazy regex ``<(script|style|head)\\b.*?</\\1\\s*>`` (ignoring case) did, in linear
    time: that regex rescans to the end of the text from every opening tag without a closing one.
    """
    pieces: list[str] = []
    kept_from = search_from = 0
    unclosed: set[str] = set()  # no closing tag after some opening tag: none after later ones
    while len(unclosed) < len(_SKIPPED_CLOSE):
        opening = _SKIPPED_OPEN.search(markup, search_from)
        if opening is None:
            break
        name = opening.group(1).lower()
        closing = None if name in unclosed else _SKIPPED_CLOSE[name].search(markup, opening.end())
        if closing is None:
            unclosed.add(name)
            search_from = opening.end()
            continue
        pieces.append(markup[kept_from : opening.start()])
        pieces.append(" ")
        kept_from = search_from = closing.end()
    pieces.append(markup[kept_from:])
    return "".join(pieces)


def html_to_text(markup: str, /) -> str:
    """Plain text from an HTML notice: line breaks kept, tags dropped, entities decoded."""
    text = _drop_skipped_elements(markup)
    text = re.sub(r"(?i)<br\s*/?>|</(?:p|div|tr|li|h\d)\s*>", "\n", text)
    text = re.sub(r"<[^>]{0,2000}>", "", text)
    return html.unescape(text).replace("\xa0", " ")


def cut_notice(text: str, /) -> tuple[str, str]:
    """Split a bounce body into the notice and the returned copy of the original message."""
    end = len(text)
    lowered = text.lower()
    if len(lowered) == len(text):  # the same offsets (lower() can lengthen a few letters)
        match = _CUT_PHRASES_LOWER.search(lowered)
    else:
        match = _CUT_PHRASES.search(text)
    if match:
        end = match.start()
        line_start = text.rfind("\n", 0, end) + 1
        # a marker line of its own ("----- Original message -----") goes with the tail
        if not text[line_start:end].strip(" \t-=_*|>:"):
            end = line_start
    match = _HEADER_LINE.search(text, 0, end)
    if match:
        end = match.start()
    return text[:end], text[end:]


def _clean_address(address: str) -> str:
    local, _, domain = address.rpartition("@")
    local = _X400_PREFIX.sub("", local).lstrip("'`")
    return f"{local}@{domain}"


def _is_system(address: str) -> bool:
    return address.partition("@")[0].lower() in _SYSTEM_LOCALPARTS


def find_recipients(
    notice: str,
    /,
    *,
    exclude: Iterable[str] = (),
    fallback_domain: str | None = None,
    envelope_recipients: Iterable[str] = (),
) -> list[Found]:
    """The failed recipients a notice names, in order, each with the text about it."""
    excluded = {a.lower() for a in exclude}
    excluded.update(m.group(1).lower() for m in _MAIL_FROM.finditer(notice))
    lines = notice.split("\n")
    lowered_lines = notice.lower().split("\n")
    if len(lowered_lines) != len(lines):  # lower() never adds line breaks, but be safe
        lowered_lines = [line.lower() for line in lines]
    offsets = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    intro_until = -1
    intro_rows: set[int] = set()
    for row, line in enumerate(lowered_lines):
        if _INTRO_LINE.search(line):
            intro_until = row + 8
        elif row <= intro_until:
            intro_rows.add(row)

    # (row, address, how much the place says "failed recipient": 2 clearly, 1 maybe, 0 not)
    hits: list[tuple[int, str, int]] = []
    originals: list[tuple[int, str]] = []
    for row, line in enumerate(lines):
        if "@" not in line:
            continue
        echo = _ECHO_LINE.match(line) is not None
        # what depends on the whole line is worked out once per line, not once per address
        stripped: str | None = None
        failure_line = False
        lead_end = len(line) - len(line.lstrip(_LEAD_PUNCTUATION))
        for match in ADDRESS_RE.finditer(line):
            address = _clean_address(match.group(1))
            lowered = address.lower()
            start, end = match.span()
            before = line[max(0, start - _CONTEXT_CHARS) : start]
            after = line[end : end + _CONTEXT_CHARS]
            if _ORIGINAL_BEFORE.search(before):
                originals.append((row, address))
                continue
            if (
                echo
                or lowered in excluded
                or _is_system(address)
                or _SENDER_BEFORE.search(before)
                or _CONTACT_BEFORE.search(before)
                or _SENDER_OK_AFTER.match(after)
            ):
                continue
            if stripped is None:
                stripped = line.strip(_LIST_PUNCTUATION)
                failure_line = (
                    _FAILURE_WORDS.search(lowered_lines[row]) is not None
                    or _REPLY_IN_LINE.search(line) is not None
                    or row in intro_rows
                )
            if failure_line or stripped == match.group(0).strip():
                level = 2
            elif start <= lead_end or _LABEL_BEFORE.search(before):
                level = 1
            else:
                level = 0
            hits.append((row, address, level))

    if originals:
        hits = _replace_aliases(hits, originals)
    hits.sort(key=lambda hit: hit[0])

    if any(level == 2 for _, _, level in hits):
        hits = [hit for hit in hits if hit[2]]
    else:
        # a bare user name in the failure list says more than addresses in explanations
        named = _bare_recipients(lines, fallback_domain, envelope_recipients)
        if named:
            return named
        if any(hits_level for _, _, hits_level in hits):
            hits = [hit for hit in hits if hit[2]]
    first: list[tuple[int, str]] = []
    seen: set[str] = set()
    for row, address, _ in hits:
        if address.lower() not in seen:
            seen.add(address.lower())
            first.append((row, address))
    if not first:
        return _bare_recipients(lines, fallback_domain, envelope_recipients)

    found = []
    # addresses on one line share that line as their chunk: one string, not a copy each
    chunks: dict[tuple[int, int], str] = {}
    for index, (row, address) in enumerate(first):
        next_row = first[index + 1][0] if index + 1 < len(first) else len(lines)
        if next_row <= row:
            next_row = row + 1
        chunk = chunks.get((row, next_row))
        if chunk is None:
            chunk = notice[offsets[row] : offsets[next_row] if next_row < len(lines) else None]
            chunk = chunks[row, next_row] = chunk.strip()
        found.append(Found(address, chunk))
    return found


def _replace_aliases(
    hits: list[tuple[int, str, int]], originals: list[tuple[int, str]]
) -> list[tuple[int, str, int]]:
    """Hits with each "(expanded from: x)" address in place of the alias it was expanded to.

    The alias is the latest hit (in the order found) on the original's row or the two rows
    above it whose address differs; looked up per row, so many originals cost linear time.
    """
    entries: list[tuple[int, str, int] | None] = list(hits)
    by_row: dict[int, list[int]] = {}
    for position, hit in enumerate(hits):
        by_row.setdefault(hit[0], []).append(position)
    for orow, original in originals:
        target = original.lower()
        alias = -1
        for row in (orow - 2, orow - 1, orow):
            positions = by_row.get(row, [])
            while positions and entries[positions[-1]] is None:
                positions.pop()  # replaced before
            for position in reversed(positions[-_MAX_ALIAS_SCAN:]):
                entry = entries[position]
                if entry is not None and entry[1].lower() != target:
                    alias = max(alias, position)
                    break
        if alias >= 0:
            entries[alias] = None
        by_row.setdefault(orow, []).append(len(entries))
        entries.append((orow, original, 2))
    return [entry for entry in entries if entry is not None]


def _bare_recipients(
    lines: list[str], fallback_domain: str | None, envelope_recipients: Iterable[str]
) -> list[Found]:
    """User names without a domain, listed after a failure line ("did not reach: ann")."""
    envelope = {a.partition("@")[0].lower(): a for a in envelope_recipients}
    found: list[Found] = []
    for row, line in enumerate(lines):
        low = line.lower()
        if not (_INTRO_LINE.search(low) or (low.rstrip().endswith(":") and
                                            _FAILURE_WORDS.search(low))):
            continue
        for follow in lines[row + 1 : row + 6]:
            if not follow.strip():
                if found:
                    break
                continue
            match = _BARE_TOKEN.match(follow)
            if not match:
                break
            user = match.group(1)
            address = envelope.get(user.lower())
            if address is None and fallback_domain and user.lower() not in _SYSTEM_LOCALPARTS:
                address = f"{user}@{fallback_domain}"
            if address is not None:
                found.append(Found(address, follow.strip()))
        if found:
            break
    return found


def envelope_recipients(returned_headers: str, /) -> list[str]:
    """Addresses from ``Received: ... for <x>;`` clauses of the returned message's headers."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", returned_headers)
    seen: dict[str, str] = {}
    for match in _RCVD_FOR.finditer(unfolded):
        address = match.group(1).strip("<>")
        seen.setdefault(address.lower(), address)
    return list(seen.values())


def is_delay_text(text: str, /) -> bool:
    """True when a notice says delivery is still being tried (a delay warning)."""
    text = text.lower()
    return _PERMANENT_RE.search(text) is None and _DELAY_RE.search(text) is not None


def is_permanent_text(text: str, /) -> bool:
    """True when a notice says in so many words that the failure is permanent."""
    return _PERMANENT_RE.search(text.lower()) is not None


def looks_like_bounce(subject: str, sender: str, notice: str, /) -> bool:
    """True when the subject, the sender or the notice read like a non-delivery report."""
    return bool(
        _BOUNCE_SUBJECT.search(subject)
        or _SYSTEM_SENDER.search(sender)
        or _BOUNCE_BODY.search(notice)
    )


def extract_codes(text: str, /) -> tuple[str | None, int | None]:
    """The first RFC 3463 status (``5.1.1``) and SMTP reply code (``550``) in a text."""
    status = None
    for match in _ENHANCED.finditer(text):
        status = ".".join(match.groups())
        break
    reply = _REPLY_CODE.search(text)
    return status, int(reply.group(1)) if reply else None


def detect_format(text: str, /) -> str:
    """A short name of the MTA or provider that wrote a notice, or ``"text"``."""
    text = text.lower()
    for name, pattern in _FORMATS:
        if pattern.search(text):
            return name
    return "text"
