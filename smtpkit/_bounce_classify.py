"""Classify one failed recipient: a reason from a fixed vocabulary, and whether it is hard.

Private helper of :mod:`smtpkit.bounces`; the vocabulary is documented there (``REASONS``).

Precedence (see the module docstring of :mod:`smtpkit.bounces` for the why): the diagnostic text
decides the reason when it names a known situation; otherwise the RFC 3463 status code does
(its subject and detail), then a bare SMTP reply code; ``other`` when nothing is known.

Example:
    >>> classify("5.0.0", 550, "host mx.example.com said: 550 User unknown", permanent=True)
    ('user_unknown', True)
    >>> classify("4.2.2", None, "", permanent=False)
    ('mailbox_full', False)
"""

from __future__ import annotations

import functools
import re

__all__ = ["HARD_REASONS", "REASONS", "classify", "reason_from_code", "reason_from_text"]

#: Every ``reason`` a bounce row can have, with what it means.
REASONS: dict[str, str] = {
    # the address itself is bad: suppress it (when the failure is permanent)
    "user_unknown": "The mailbox does not exist (5.1.1, 'no such user', 'user unknown').",
    "mailbox_disabled": "The mailbox exists but is disabled, suspended or closed (5.2.1).",
    "bad_address": "The address is malformed or not a mailbox (5.1.3).",
    "host_unknown": "The recipient domain does not exist or has no mail server (5.1.2).",
    # the mailbox or the receiving system has a problem
    "mailbox_full": "The mailbox is over quota (5.2.2, 4.2.2).",
    "message_too_large": "The message exceeds a size limit (5.3.4, 5.2.3).",
    "system_error": "The receiving system failed: disk full, a crashed filter, ... (x.3.x).",
    "network_error": "No connection or no answer from the receiving host (4.4.1, 4.4.2).",
    "mail_loop": "The message looped between servers (5.4.6, 'too many hops').",
    "expired": "The sending server gave up after retrying for too long (4.4.7, 5.4.7).",
    # the receiver refused the sender or the content
    "blocked": "The sending IP or domain is on a block list or has a poor reputation.",
    "spam_detected": "The content was judged to be spam or unsolicited bulk mail.",
    "virus_detected": "The message was judged to carry a virus or malware.",
    "content_rejected": "The content was refused: attachment type, headers, encoding (x.6.x).",
    "policy": "Refused by a local policy: relaying denied, not authorized, ... (5.7.1).",
    "auth_failure": "SPF, DKIM or DMARC did not pass for the sender (5.7.23-5.7.29).",
    "rate_limited": "Too many messages or connections; sending is throttled (4.7.0, 421).",
    "greylisted": "Greylisting: a first delivery attempt is deferred on purpose (4.7.1, 451).",
    "other": "A failure that could not be classified.",
    # not failures
    "delivered": "A positive delivery status notification (Action: delivered/relayed/expanded).",
    "complaint": "The recipient marked the message as spam (ARF feedback report).",
    "auto_reply": "An automatic reply such as an out-of-office notice (RFC 3834).",
    # kind="unparsed"
    "not_a_bounce": "A readable message that is no DSN, complaint, auto-reply or bounce text.",
    "no_recipient": "A bounce, but no recipient and no matching envelope could be found.",
    "malformed": "Not a mail message at all: empty, binary junk, or no header section.",
    "parse_error": "The message could not be parsed; the diagnostic says why.",
}

#: Reasons that make a permanent failure *hard* (the address must not be mailed again).
HARD_REASONS: frozenset[str] = frozenset(
    {"user_unknown", "mailbox_disabled", "bad_address", "host_unknown"}
)

# Ordered: the first pattern that matches names the reason. More specific situations come
# before the generic words they contain ("blocked using Spamhaus" is a block list, not spam).
_TEXT_RULES: tuple[tuple[str, str], ...] = (
    ("auth_failure", r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated (e-?mail|mail|message)"
     r"|sender policy framework|5\.7\.(?:2[3-9])\b"),
    ("virus_detected", r"\bvirus(?:es)?\b|malware|infected|trojan|\bworm\b"),
    ("mail_loop", r"\bloop(?:ing|s|ed)?\b|too many hops|hop count exceeded"),
    ("greylisted", r"gr[ae]y-?list"),
    # a block list names the sender, even when the list has "spam" in its name
    ("blocked", r"black-?list|block-?list|\bblock list|deny-?list"
     r"|(?<!not )\blisted (?:in|on|at|by)\b|spamhaus|spamcop|barracuda|sorbs|\brbl\b"
     r"|\bdnsbl\b|reputation|blocked (?:using|by)"),
    ("spam_detected", r"\bspam\b|unsolicited|\bjunk\b|\bube\b|bulk (?:e-?)?mail"
     r"|content filter|spam score|looks like spam"),
    ("blocked", r"not accepting mail from|banned sender|blocked (?:because|due)"
     r"|(?:ip|address|host|domain|sender|client)\b[^.\n]{0,40}\bblocked|\bblocked\b"),
    ("rate_limited", r"rate[- ]limit|too many (?:messages|connections|recipients|mails|emails"
     r"|concurrent|sessions)|throttl|sending quota|(?:message|connection|receiving) rate"
     r"|at a rate|slow down|try again in \d+"),
    ("mailbox_disabled", r"(?:account|mailbox|user|address)\b[^.\n]{0,30}\b(?:disabled"
     r"|deactivated|suspended|inactive|discontinued|closed|locked|expired|terminated)"
     r"|(?:disabled|inactive|suspended|closed) (?:account|mailbox)"),
    ("message_too_large", r"too (?:large|big)|size (?:limit|exceed)|exceeds? (?:the )?"
     r"(?:maximum |max )?(?:allowed )?(?:message )?size|maximum (?:inbound )?(?:message )?size"
     r"|message (?:length|size) exceeds|message is too long"),
    ("mailbox_full", r"quota|mailbox (?:is )?full|mail ?folder is full|full mailbox"
     r"|mailbox (?:size|storage)|storage (?:limit|space)|insufficient (?:disk )?space"
     r"|box space not enough|too much mail|over ?limit|exceeded storage|mailbox has exceeded"
     r"|out of storage|user'?s? (?:mail)?box is full"),
    ("user_unknown", r"user ?unknown|unknown (?:user|recipient|local|address|mailbox|alias)"
     r"|no such (?:user|mailbox|recipient|person|account|address|local)"
     r"|(?:user|mailbox|recipient|address|account|addressee)(?: name)?\b[^.\n]{0,20}\b"
     r"(?:unknown|not found|not known|not exist|does not exist|doesn't exist|not recognized"
     r"|not listed|not valid|invalid)"
     r"|does not exist|doesn'?t have an? [^\n]{0,40}account|not listed in"
     r"|invalid (?:recipient|mailbox|user|address|final delivery)|recipientnotfound"
     r"|recipnotfound|address not found|undeliverable address|no mailbox"
     r"|mailbox unavailable|mailbox not available|no longer (?:valid|available|active)"
     r"|not a valid (?:mailbox|user|recipient|address)|not our customer"
     r"|no final (?:e-?mail )?delivery point|no matches to nameserver|bad destination mailbox"
     r"|non recens|unbekannt|inexistant|n'existe pas|existiert nicht|user not found"
     r"|unknown or illegal|addressee unknown|not a known user|did not exactly match"),
    ("host_unknown", r"host (?:or domain name )?not found|unknown host|domain (?:not found"
     r"|does not exist|unknown|name not found)|name service error|no mx|mail exchanger"
     r"|nxdomain|unroutable|unrouteable|could not find a gateway|dns (?:error|lookup)"
     r"|no such domain|unknown domain|null mx|no valid (?:mx|host)"),
    ("expired", r"too long (?:in|on) (?:the )?queue|(?:in|on) the queue too long"
     r"|not delivered within|(?:delivery )?time expired|time-expired|message expired"
     r"|expired in queue|retry time(?:out)? exceeded|maximum delivery attempts"
     r"|not been collected|message timed out|delivery failed \d+ attempts|aborted after"),
    ("network_error", r"connection (?:refused|timed out|reset|lost|closed|dropped)"
     r"|could(?: not|n't) connect|unable to connect|no answer from|not responding"
     r"|not reachable|unreachable|establish an smtp connection|lost connection"
     r"|conversation with [^\n]{0,80}timed out|tls (?:handshake|negotiation)|timed? ?out"),
    ("bad_address", r"bad (?:address|recipient address) syntax|syntax error in (?:the )?"
     r"(?:recipient|address)|malformed address|invalid (?:address )?syntax"),
    ("content_rejected", r"attachment|content (?:rejected|not accepted|refused)"
     r"|message content|(?:invalid|bad|illegal|malformed|missing) (?:header|mime)"
     r"|header[^.\n]{0,20}(?:rejected|invalid|too long)|\b8-?bit\b|line too long"),
    ("policy", r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)"
     r"|unable to relay|not permitted to relay|not authori[sz]ed|administrative prohibition"
     r"|prohibited|\bpolic(?:y|ies)\b|not allowed|access denied|permission denied|refused"),
    ("system_error", r"command died|internal (?:server )?error|local (?:error|configuration)"
     r"|system (?:error|not accepting|config|resources)|temporary local problem"
     r"|insufficient system|out of memory|mail system (?:full|error)|status \d+"),
)
# The rules are lower case and run on lower-cased text: 2-3x faster than re.IGNORECASE.
_TEXT_PATTERNS = tuple((reason, re.compile(rx)) for reason, rx in _TEXT_RULES)
#: Only the start of a long notice is classified (the specific part is near the top).
MAX_CLASSIFY_CHARS = 2000

_STATUS_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")

# RFC 3463 (and RFC 7505 / RFC 7372) subject.detail -> reason. x.y.0 is "other" and too vague.
_CODE_REASONS: dict[tuple[int, int], str] = {
    (1, 1): "user_unknown",
    (1, 2): "host_unknown",
    (1, 3): "bad_address",
    (1, 6): "user_unknown",
    (1, 10): "host_unknown",
    (2, 1): "mailbox_disabled",
    (2, 2): "mailbox_full",
    (2, 3): "message_too_large",
    (3, 1): "system_error",
    (3, 2): "system_error",
    (3, 4): "message_too_large",
    (4, 1): "network_error",
    (4, 2): "network_error",
    (4, 3): "network_error",
    (4, 4): "host_unknown",
    (4, 6): "mail_loop",
    (4, 7): "expired",
    (7, 1): "policy",
    (7, 23): "auth_failure",
    (7, 24): "auth_failure",
    (7, 25): "auth_failure",
    (7, 26): "auth_failure",
    (7, 27): "auth_failure",
}
_SUBJECT_REASONS: dict[int, str] = {
    3: "system_error",
    4: "network_error",
    6: "content_rejected",
    7: "policy",
}
_REPLY_REASONS: dict[int, str] = {552: "mailbox_full", 421: "rate_limited", 554: "policy"}


def reason_from_text(text: str, /) -> str | None:
    """The reason named by a diagnostic text, or None when it names none of them."""
    if not text:
        return None
    # cut before the cache: its keys would otherwise keep whole notices (megabytes) alive
    return _reason_from_start(text[:MAX_CLASSIFY_CHARS])


@functools.lru_cache(maxsize=256)  # one notice is often classified for several recipients
def _reason_from_start(text: str, /) -> str | None:
    text = text.lower()
    for reason, pattern in _TEXT_PATTERNS:
        if pattern.search(text):
            return reason
    return None


def reason_from_code(status: str | None, reply_code: int | None = None, /) -> str | None:
    """The reason an RFC 3463 status (else an SMTP reply code) stands for, or None."""
    if status:
        match = _STATUS_RE.match(status)
        if match:
            subject, detail = int(match.group(2)), int(match.group(3))
            reason = _CODE_REASONS.get((subject, detail)) or _SUBJECT_REASONS.get(subject)
            if reason is not None:
                return reason
    if reply_code is not None:
        return _REPLY_REASONS.get(reply_code)
    return None


def classify(
    status: str | None,
    reply_code: int | None,
    text: str,
    /,
    *,
    permanent: bool,
    text_reason: str | None = None,
) -> tuple[str, bool]:
    """``(reason, hard)`` for one failed recipient; the text wins over the code (see above).

    ``text_reason`` is ``reason_from_text(text)`` when the caller has it already.
    """
    reason = text_reason or reason_from_text(text) or reason_from_code(status, reply_code)
    reason = reason or "other"
    return reason, permanent and reason in HARD_REASONS
