"""The verdict on one failed recipient, from all the evidence, in a fixed order.

Evidence: the DSN ``Action`` and ``Status`` (with the comment after it), the
``Diagnostic-Code`` (the remote server's own words and the enhanced code they
quote), and the prose of the report. The text is unfolded (line breaks and
runs of spaces become one space) before any wording is matched, so a phrase
that a mail system wrapped over two lines still matches.

The order, first match wins (each step names the **rule** that decided, kept
with the report so a wrong rule can be found and undone later):

1. ``Action: delivered``, ``relayed``, ``expanded``: not a failure (None).
2. ``Action: delayed`` (and delay notices): **soft** (``delayed``).
3. Wording that the **message or the sender** was refused: block lists,
   spam or virus content, SPF/DKIM/DMARC, reverse DNS, reputation, policy,
   "sender address rejected", relaying denied: **blocked**
   (``words:<name>``). This comes before any status code, because such a
   refusal says nothing about whether the supporter's address works,
   whatever code the server put in front of it.
4. Wording of a **temporary** state: mailbox full or over quota, expiry
   after retries ("retry timeout exceeded", even when an MTA calls it
   permanent), rate limits, too many connections, network trouble: **soft**.
5. Wording that the **address does not work** ("user unknown", "no such
   user", "does not exist", "not recognized", "unknown host" ...):
   **hard** when the failure is permanent (class 5, or no code), else soft.
6. The most specific enhanced status (the ``Status`` field, refined by the
   code quoted in the diagnostic when the field is generic ``X.0.0``), by
   RFC 3463 subject and detail: ``5.1.1``/``5.1.2``/``5.1.3``/``5.1.6``/
   ``5.1.10`` (the address or its domain does not exist) are **hard**;
   ``X.1.7``/``X.1.8`` (our sender address), ``X.5.x`` (protocol),
   ``X.6.x`` (content), ``X.7.x`` (security and policy) are **blocked**;
   ``X.2.x``/``X.3.x``/``X.4.x`` (mailbox, mail system, network) and every
   class 4 status are **soft**.
7. The basic reply code alone: 550/551/553 are **hard**, 554 **blocked**,
   552 and every 4xx **soft**.
8. A failure with no usable evidence (including a bare generic ``5.0.0``):
   **soft**, never hard: it takes several of those to stop a supporter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.inbound.status import SUCCESS_ACTIONS, Kind

# (rule name, pattern) in the order tried; the patterns see unfolded, lowercased text.
_BLOCKED = (
    (
        "spam",
        r"\bspam|unsolicited|junk mail|bulk mail|\bphish|content (?:filter|rejected|policy)"
        r"|message (?:content )?(?:rejected|refused) (?:as|due|because)|suspicious",
    ),
    ("virus", r"\bvirus|malware|infected|\bmalicious"),
    (
        "blocklist",
        r"black ?list|block ?list|(?<!account is )\bblocked\b|\bblocking|\brbl\b|dnsbl"
        r"|spamhaus|spamcop|barracuda"
        r"|sorbs|(?<!not )listed (?:in|on|at|by) "
        r"(?!(?:the )?(?:domino |public )?(?:directory|name))"
        r"|\blisted\b.{0,40}\b(?:dnsbl|rbl|list)|denied by policy",
    ),
    (
        "authentication",
        r"\bspf\b|\bdkim\b|\bdmarc\b|not authenticated|authentication (?:failed|failure|required)"
        r"|unauthenticated|sender (?:policy|verify|verification)|reverse (?:dns|lookup)"
        r"|\bptr\b|\brdns\b|no (?:ptr|reverse)|hostname (?:does not|doesn't) (?:match|resolve)",
    ),
    (
        "reputation",
        r"reputation|invalid ip|poor (?:ip|sending)|low (?:ip|sender)|user complaints"
        r"|unverif(?:y|i)able sending|client host rejected"
        r"|\bip (?:address )?(?:has been )?(?:blocked|banned|rejected|is on)|banned"
        r"|ip address.{0,30}(?:rejected|refused|denied)",
    ),
    (
        "sender",
        r"sender (?:address )?(?:rejected|refused|denied|blocked|domain|is not|unknown)"
        r"|(?:from|sender)(?: address)? (?:domain )?(?:not|does not|doesn't) (?:exist|resolve)"
        r"|mail from.{0,30}(?:rejected|refused|denied)|envelope sender"
        r"|(?:domain of|unroutable|invalid) sender|from: domain is invalid|\bmail rejected\b"
        r"|sender (?:mx|verify)|insecure mail relay"
        r"|protocol violation|messages from \S+ (?:weren't|were not)|your message was rejected"
        r"|^\d{3}[ -](?:\d\.\d\.\d+ )?rejected\b",
    ),
    (
        "relaying",
        r"relay(?:ing)? (?:access )?(?:denied|not (?:allowed|permitted))|not permitted to relay"
        r"|unable to relay|we do not relay|relay not",
    ),
    (
        "policy",
        r"\bpolic(?:y|ies)\b|not (?:allowed|permitted|authorized|accepted) (?:to|by)"
        r"|(?:do not|don't|not) have permission|permission to post|not permitted to post"
        r"|refused to accept|rejected by (?:the )?(?:recipient(?:'s)? )?(?:filter|server's policy)"
        r"|\b(?<!#)filter(?:ed|ing)?\b|prohibited|administrative(?:ly)? prohibit"
        r"|(?<!rejected: )access denied"
        r"|not accepting mail from|rejected for (?:your|our)"
        r"|(?<!rejected: access )\bdenied\b|message (?:refused|rejected)"
        r"|\bheader\b.{0,40}(?:invalid|rejected|missing|syntax)|rfc ?(?:5322|2822|822)"
        r"|(?:message|mail) (?:is )?not (?:compliant|accepted)",
    ),
)
_SOFT = (
    (
        "full",
        r"mailbox\b.{0,60}?\bfull\b|\bfull mailbox|over (?:disk |the |their |storage )?quota"
        r"|quota (?:exceeded|exceed|full)"
        r"|exceed(?:s|ed)? (?:the |their |his |her )?(?:storage|quota|disk|mailbox size)|insufficient (?:system )?storage|(?:disk|storage) (?:is )?full"  # noqa: E501
        r"|no (?:space|room) left|mail ?box (?:size|quota) limit|mailfolder is full"
        r"|exceeds allowed size|messages in recipient's mailbox exceeded",
    ),
    (
        "expired",
        r"retry (?:timeout|time) (?:exceeded|expired)|in the queue too long|too long in (?:the )?queue"  # noqa: E501
        r"|delivery time expired|message expired|expired after|has been delayed|delivery (?:has been )?"  # noqa: E501
        r"delayed|could not be delivered within|giving up|gave up|timed? ?out|no answer from"
        r"|retry limit|maximum (?:time|retries)|deferred|not yet been delivered"
        r"|envelope expired|was aborted after|retry time not reached",
    ),
    (
        "rate",
        r"rate limit|rate.?limit"
        r"|too many (?:connections|messages|mails|emails|concurrent|sessions|recipients)"
        r"|sending rate|receiving (?:mail|email) at a rate|try again later|temporar|throttl"
        r"|exceeded (?:the )?(?:rate|limit|maximum number)|frequency|too fast|slow down",
    ),
    (
        "network",
        r"connection (?:refused|reset|timed out|lost|closed)|network (?:is )?unreachable"
        r"|could not connect|unable to connect|cannot connect|host not reachable"
        r"|lost connection|no route to host|loop(?:s)? back to myself|mail loop|routing loop"
        r"|too many hops|system (?:error|failure)|local (?:error|configuration)|internal error"
        r"|i/o error|resources? (?:temporarily )?unavailable|insufficient resources"
        r"|(?:couldn't|could not|can't|cannot) create|host not found, try again"
        r"|could not find a gateway",
    ),
    (
        "size",
        r"message (?:size|length) exceeds|message (?:is )?too (?:big|large)|size limit|exceeds? "
        r"(?:the )?(?:maximum|size|message size)|message file too big",
    ),
)
_SUSPENDED = (
    (
        "suspended",
        r"suspended|account is blocked|(?<!user )disabled|deactivated|not active|is locked|frozen|on hold|over the limit",  # noqa: E501
    ),
)
_HARD = (
    (
        "no-mailbox",
        r"user (?:unknown|not found|not known|does not exist|doesn't exist|invalid|disabled and)"
        r"|unknown (?:user|recipient|address|mailbox|local ?part|account)"
        r"|no such (?:user|mailbox|recipient|address|account|person)|no mailbox"
        r"|(?:mailbox|recipient|address|account|user|addressee)\b.{0,40}?\b(?:does not exist"
        r"|doesn't exist|not exist|unavailable|not found|is unknown|unknown|invalid|not valid"
        r"|not recognized|is not recognised|not recognised|is not known)"
        r"|(?:does not|doesn't) have an? (?:\S+ )?account|has no (?:\S+ )?account"
        r"|not (?:listed|found) in (?:the )?(?:domino |public |address )?(?:directory|name)"
        r"|not a (?:valid|known) (?:user|recipient|mailbox)|invalid (?:recipient|mailbox|address|user)"  # noqa: E501
        r"|bad (?:recipient|destination mailbox)|no valid recipients|unrouteable address"
        r"|(?:recipient|address) rejected: (?:user unknown|undeliverable|unknown|not)|unknown local"
        r"|recipient address rejected\.?$"
        r"|invalid (?:final delivery )?userid"
        r"|addressee unknown|user (?:name )?is not|not our customer|no longer (?:valid|available|active)"  # noqa: E501
        r"|mailbox not (?:found|available)|recipient (?:not found|unknown)|invalid address"
        r"|this user doesn't have|account (?:closed|has been closed|expired|removed|deleted)"
        r"|inactive (?:email |e-mail )?address|couldn't find a mail exchanger|illegal host"
        r"|invalid domain|recipient address rejected: access denied",
    ),
    (
        "no-domain",
        r"unknown host|host (?:or domain name )?not found|host unknown|domain (?:not found|does not"
        r" exist|doesn't exist|name not found|unknown|is not|not exist)|no (?:mx|mail exchanger)"
        r"|name or service not known|nxdomain|unrouteable (?:mail )?domain|no such domain"
        r"|dns (?:lookup )?(?:error|failure).{0,30}(?:domain|host)|does not accept mail|null mx"
        r"|indicated no smtp service|not accepting network messages"
        r"|^\d{3}[ -](?:\d\.\d\.\d+ )?[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist",
    ),
    ("moved", r"has moved|address (?:has )?changed|moved to|no longer (?:at|with)"),
)


def _compile(table: tuple[tuple[str, str], ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((name, re.compile(pattern)) for name, pattern in table)


BLOCKED_WORDS = _compile(_BLOCKED)
SOFT_WORDS = _compile(_SOFT)
HARD_WORDS = _compile(_HARD)
SUSPENDED_WORDS = _compile(_SUSPENDED)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_AFTER_DATA = re.compile(r"in reply to (?:end of )?data\b|after (?:end of )?data\b")
_HARD_DETAILS = frozenset({"1.1", "1.2", "1.3", "1.6", "1.10"})
_BLOCKED_DETAILS = frozenset({"1.7", "1.8"})


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    rule: str  # which step decided: "status:5.1.1", "words:spam", "reply:550", ...
    status: str  # the enhanced status used (the field, or the one the diagnostic quotes)


_NOT_WORDS = re.compile(r"[^\s@]{0,64}@\S{1,255}")  # bounded: linear on hostile text
_PROSE_LIMIT = 20_000  # characters of prose read for wording


def unfold(text: str) -> str:
    """``text`` on one line, lowercased, each run of white space one space, without
    addresses (a mailbox called "blocked@" says nothing)."""
    return " ".join(_NOT_WORDS.sub(" ", text).split()).lower()


def words(table: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> str:
    """The name of the first rule of ``table`` whose wording is in ``text`` (unfolded)."""
    for name, pattern in table:
        if pattern.search(text):
            return name
    return ""


def refined_status(status: str, diagnostic: str) -> str:
    """``status``, or a more specific code quoted in ``diagnostic`` when it is ``X.0.0``."""
    if status and not status.endswith(".0.0") and not status.endswith(".0"):
        return status
    for m in _ENHANCED.finditer(diagnostic):
        quoted = ".".join(m.groups())
        if quoted.endswith(".0.0"):
            continue
        if not status or quoted[0] == status[0] or (status[0] == "5" and quoted[0] == "4"):
            return quoted
    return status


def _specific(status: str) -> bool:
    """Whether ``status`` says more than "failed": an address (X.1.x), mailbox (X.2.x)
    or security (X.7.x) status, not a generic or protocol one (qmail puts ``5.5.0``
    on everything it does not understand)."""
    subject = status[2:].partition(".")[0]
    return subject in ("1", "2", "7") and not status.endswith(".0")


def _by_status(status: str) -> tuple[Kind, str] | None:
    klass, _, detail = status.partition(".")
    subject = detail.partition(".")[0]
    if klass == "4":
        return Kind.SOFT_BOUNCE, f"status:{status}"
    if klass != "5" or detail in ("0.0", ""):
        return None
    if detail in _HARD_DETAILS:
        return Kind.HARD_BOUNCE, f"status:{status}"
    if detail in _BLOCKED_DETAILS or subject in ("5", "6", "7"):
        return Kind.BLOCKED, f"status:{status}"
    if subject in ("2", "3", "4"):
        return Kind.SOFT_BOUNCE, f"status:{status}"
    return None


def _by_code(code: int | None) -> tuple[Kind, str] | None:
    if code is None:
        return None
    if code == 551:
        return Kind.HARD_BOUNCE, f"reply:{code}"
    if code == 554:
        return Kind.BLOCKED, f"reply:{code}"
    if 400 <= code < 600:
        return Kind.SOFT_BOUNCE, f"reply:{code}"
    return None


def judge(
    action: str, status: str, diagnostic: str, *, code: int | None = None, prose: str = ""
) -> Verdict | None:
    """The verdict on one failed recipient; None when the report is not of a failure.

    ``status`` is the DSN ``Status`` field (or the code found in prose),
    ``diagnostic`` the remote server's words (``Diagnostic-Code`` and the
    comment after the status), ``prose`` the report's own explanation, read
    for wording only when the diagnostic has none.
    """
    action = action.lower()
    if action in SUCCESS_ACTIONS:
        return None
    status = refined_status(status, diagnostic)
    text = unfold(diagnostic)
    if action in ("delayed", "delay"):
        return Verdict(Kind.SOFT_BOUNCE, "delayed", status)
    if action == "expired":
        return Verdict(Kind.SOFT_BOUNCE, "expired", status)
    permanent = status[:1] == "5" or (code is not None and code >= 500) or not status
    if code is not None and 400 <= code < 500:
        permanent = False
    if status[2:] in _BLOCKED_DETAILS:
        return Verdict(Kind.BLOCKED, f"status:{status}", status)
    if code is not None and 500 <= code <= 504 and status[2:] not in _HARD_DETAILS:
        # A syntax or sequence error: our SMTP conversation was refused, not the address.
        return Verdict(Kind.BLOCKED, f"reply:{code}", status)
    after_data = bool(_AFTER_DATA.search(text) or _AFTER_DATA.search(unfold(prose[:_PROSE_LIMIT])))
    for source in (text, unfold(prose[:_PROSE_LIMIT])) if prose else (text,):
        if not source:
            continue
        if name := words(BLOCKED_WORDS, source):
            return Verdict(Kind.BLOCKED, f"words:{name}", status)
        if name := words(SOFT_WORDS, source):
            return Verdict(Kind.SOFT_BOUNCE, f"words:{name}", status)
        if name := words(HARD_WORDS, source):
            if after_data and name == "no-mailbox":
                # A real unknown user is refused at RCPT TO; "unknown user" as the answer
                # to the message itself is a recipient's filter refusing our mail.
                return Verdict(Kind.BLOCKED, f"words:{name}-after-data", status)
            kind = Kind.HARD_BOUNCE if permanent and status[:1] != "4" else Kind.SOFT_BOUNCE
            return Verdict(kind, f"words:{name}", status)
        if name := words(SUSPENDED_WORDS, source):
            return Verdict(Kind.SOFT_BOUNCE, f"words:{name}", status)
        if text and _specific(status):
            break  # the server's words say nothing known, but a specific code does
    decided = _by_status(status) or (_by_code(code) if status[1:] in ("", ".0.0") else None)
    if decided is not None:
        if decided[0] is Kind.HARD_BOUNCE and status[:1] == "4":
            decided = (Kind.SOFT_BOUNCE, decided[1])
        return Verdict(decided[0], decided[1], status)
    if action in ("failed", "failure", "expired", "") or status or code is not None:
        return Verdict(Kind.SOFT_BOUNCE, "no-evidence", status)
    return None
