"""Never print or write a value that looks like a secret.

Hooks run with the job's whole environment (GITHUB_TOKEN, ACTIONS_RUNTIME_TOKEN,
registry passwords) and write to places a workflow author can read back
(GITHUB_ENV, the job summary, the log).  A value is withheld when its
variable's *name* says secret (TOKEN, SECRET, PASSWORD, KEY, CREDENTIAL, ...)
or the *value* holds a secret anywhere in it.

The value rules follow the shapes a real secret scanner knows (gitleaks'
rule set was the reference; these are our own rules): provider tokens by
their prefixes (GitHub, GitLab, npm, PyPI, Slack, AWS, ...), JWTs (any JSON
header, spaced or not), private-key blocks (PEM, OpenSSH, PGP),
Authorization headers, credentials and webhook secrets in URLs, and
``secret=``/``token=``/``password=`` style assignments.  Each rule is also
applied to what a text *decodes* to (base64, base64url, percent-encoding,
one level nested) and to the text with its line breaks taken out (a token
split over lines).  Over-redacting a harmless value is cheap; leaking a
token is not.

The rules compile on first use: importing this module costs no regex work.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

REDACTED = "[redacted]"

# Whole words of an environment variable's name (split on _): any of these marks it secret.
SECRET_NAME_WORDS = frozenset({
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "PWD_HASH", "KEY", "KEYS",
    "PRIVATE", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "AUTHORIZATION", "COOKIE", "SESSION", "DSN",
    "APIKEY", "SIGNATURE", "CERT_KEY", "PAT", "OTP", "SALT", "WEBHOOK",
})
# Substrings that mark a name secret even glued to other words (GITHUB_APP_PRIVATE_KEY, NPMTOKEN, DBPASSWORD).
SECRET_NAME_PARTS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "PRIVATEKEY", "APIKEY",
                     "ACCESSKEY", "WEBHOOK")

_B64 = r"[A-Za-z0-9+/_\-]"
# Rules that need no context: each matches the secret itself.  A distinctive prefix
# (glpat-, npm_, ...) matches glued to anything, as in gitleaks; a short or generic
# one needs {B}/{E}, word boundaries in text as written; in decoded bytes (where the neighbours of a
# token are whatever the misaligned base64 around it decodes to) they are dropped.
_SHAPES = (
    # GitHub: classic PAT, OAuth, user-to-server, server-to-server (Actions' GITHUB_TOKEN), refresh.
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_\w{30,}",  # fine-grained PAT
    r"{B}v1\.[0-9a-f]{40}{E}",  # older GitHub App installation tokens
    # GitLab: personal/project/group (also routable), deploy, CI job, runner, trigger, feed, mail,
    # agent, OAuth app, SCIM, feature-flag tokens, runner registration tokens, the session cookie.
    r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|soat|ffct|cbt|dpt|oat)-[\w\-.]{16,}",
    r"GR1348941[\w\-]{20,}",
    r"_gitlab_session=\w{20,}",
    r"npm_[A-Za-z0-9]{30,}",  # npm automation/publish token
    r"pypi-[A-Za-z0-9_\-]{40,}",  # PyPI API token (a macaroon)
    r"dckr_pat_[A-Za-z0-9_\-]{20,}",  # Docker Hub
    # AWS key ids: upper case and digits, so only those count as glued on.
    r"{BU}(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}{EU}",
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API key
    r"xox[abposre]-[A-Za-z0-9\-]{10,}", r"xapp-\d-[A-Za-z0-9\-]{10,}",  # Slack
    r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"{B}sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{32,}",  # Anthropic / OpenAI
    r"{B}hf_[A-Za-z]{30,}",  # Hugging Face
    r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}", r"glc_[A-Za-z0-9+/]{32,}={0,3}",  # Grafana
    # JWT: three base64url segments whose first two decode to JSON objects ("{" then a
    # quote, a space or a line break: e + [wyz0-3]), the signature possibly empty.
    # It starts after no letter or digit (in decoded bytes also after up to 3 bytes of
    # misaligned noise); segments are possessive: no backtracking into them.
    rf"{{BJ}}e[wxyz0-3]{_B64}{{8,}}+={{0,2}}\s*\.\s*e[wxyz0-3]{_B64}{{8,}}+={{0,2}}\s*\.(?:\s*{_B64}++={{0,2}})?",
    # Private keys, PEM/OpenSSH/PGP: the whole block; a block cut short runs to the end.
    # (Spaces optional: a header split over lines is read with the line break taken out.)
    r"-----BEGIN[ A-Z0-9_\-]{0,100}PRIVATE ?KEY(?: ?BLOCK)?-----(?:[\s\S]*?-----END[ A-Z0-9_\-]{0,100}"
    r"PRIVATE ?KEY(?: ?BLOCK)?-----|[\s\S]*\Z)",
    # Credentials in a URL: scheme://user:password@ (and scheme://token@ for long userinfo).
    # (":/" with one slash too: a URL that went through a path normaliser.  Schemes are
    # short: bounding them keeps a long dotted run from costing quadratic time.)
    r"{B}[A-Za-z][A-Za-z0-9+.\-]{0,30}:/{1,2}[^\s/@:\"'<>]*:[^\s@\"'<>]+@",
    r"{B}[A-Za-z][A-Za-z0-9+.\-]{0,30}:/{1,2}[A-Za-z0-9_\-.~%]{20,}@",
    # Webhook URLs carry their secret in the path.
    r"(?:https?:/{1,2})?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]+",
    r"(?:https?:/{1,2})?(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]+",
    r"{B}https?:/{1,2}[^\s/\"'<>]+/(?:[^\s\"'<>]*/)?(?:webhooks?|hooks|webhookb2|IncomingWebhook)/[^\s\"'<>]+",
    # Authorization headers and their schemes.
    r"(?i:{B}(?:proxy-)?authorization)\s*[:=]\s*[\"']?(?:[A-Za-z\-]+\s+)?[^\s\"']{6,}",
    r"{B}(?:[Bb]earer|BEARER|Basic|BASIC|[Dd]igest)\s+[A-Za-z0-9_\-.=+/~]{8,}",
    r"(?i:\btoken)\s+[A-Za-z0-9_\-.=+/~]{20,}",
)
# ``name = value`` where the name says secret; the value is group "v" (the name's own
# prefix is not matched: scanning for it at every position would cost 40 tries a character).
_ASSIGN = (
    r"(?i:(?P<k>secret|token|passw(?:or)?d|passphrase|api[_\-]?key|access[_\-]?key|"
    r"private[_\-]?key|credentials?|signature|dsn|webhook[_\-]?url|auth(?=[_\-.\s\"':=]|key|token))"
    r"[\w.\-]{0,20})[\"']?\s*(?::=|=>|=|:)\s*[\"'`]?(?P<v>[^\s\"'`,;&]{6,})"
)
# A value after a secret-sounding name that is a placeholder, not a secret.
_PLACEHOLDER = re.compile(r"(?i)^(?:\$\{?\w+\}?|\$\{\{[^}]*\}\}|<[^>]*>|\*+|x+|\.+|none|null|true|false|"
                          r"redacted|\[redacted\]|changeme|required|optional|unset|empty|example)$")
# Runs that may be an encoding of something: base64, base64url, or percent-encoding.
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_B64URL_RUN = re.compile(r"[A-Za-z0-9_\-]{16,}={0,2}")
_PCT_RUN = re.compile(r"[A-Za-z0-9%._~+/=\-:@]*%[0-9A-Fa-f]{2}[A-Za-z0-9%._~+/=\-:@]*")
# A line break inside a token: optional trailing spaces and shell/JSON continuation, the break
# (real, or escaped as in JSON or a repr, however many backslashes), the next line's
# indentation and optional quoting.
_BREAK = re.compile(r"[ \t]*(?:\\*\r?\n|(?:\\+[rn])+|\r)[ \t>]*")
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
MAX_RUN = 1024
_LONG_RUN = re.compile(r"\S{%d,}" % (MAX_RUN + 1))

_URLSAFE = str.maketrans("-_", "+/")
_compiled: dict[str, Any] = {}


def _rules(loose: bool = False) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Compiled on first use, each set only when needed (the loose set only once
    something decodes to text): compiling costs more than scanning a hints document."""
    key = "loose" if loose else "shape"
    if key not in _compiled:
        marks = {"{B}": r"(?<![A-Za-z0-9])", "{E}": r"(?![A-Za-z0-9])", "{BU}": r"(?<![A-Z0-9])",
                 "{EU}": r"(?![A-Z0-9])"}
        jwt_start = r"(?<![A-Za-z0-9])"
        alternatives = []
        for p in _SHAPES:
            for mark, pattern in marks.items():  # only these: the rules' {n,m} quantifiers stay
                p = p.replace(mark, "" if loose else pattern)
            p = p.replace("{BJ}", f"(?:{jwt_start}|(?<=\\A.)|(?<=\\A..)|(?<=\\A...))" if loose else jwt_start)
            alternatives.append(f"(?:{p})")
        _compiled[key] = re.compile("|".join(alternatives))
    if "assign" not in _compiled:
        _compiled["assign"] = re.compile(_ASSIGN)
    return _compiled[key], _compiled["assign"]


def _direct_spans(text: str, loose: bool = False) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` that are secrets as written."""
    shape, assign = _rules(loose)
    for m in shape.finditer(text):
        yield m.span()
    for m in assign.finditer(text):
        if not _PLACEHOLDER.match(m.group("v")):
            yield m.span("v")


def _printable(raw: bytes) -> bool:
    """Mostly text: what an encoded secret decodes to (a path or a word read as base64 is noise)."""
    text = sum(1 for b in raw if 32 <= b < 127 or b in (9, 10, 13))
    return len(raw) > 0 and text >= 0.75 * len(raw)


def _b64decode(run: str, urlsafe: bool) -> list[str]:
    import binascii

    body = run.rstrip("=")
    out = []
    for offset in range(4):  # the run may start inside a longer encoded string
        chunk = body[offset:]
        chunk = chunk[: len(chunk) - len(chunk) % 4] if len(chunk) % 4 == 1 else chunk
        padded = chunk + "=" * (-len(chunk) % 4)
        try:
            raw = binascii.a2b_base64((padded.translate(_URLSAFE) if urlsafe else padded).encode())
        except (binascii.Error, ValueError):
            continue
        if _printable(raw):
            out.append(raw.decode("latin-1"))
    return out


def _pct_decode(run: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), run.replace("+", " "))


def _holds_secret(text: str, depth: int) -> bool:
    """True when ``text`` (decoded from something), or what it decodes to, holds a secret."""
    for _span in _direct_spans(text, loose=True):
        return True
    if depth <= 0:
        return False
    return any(True for _ in _encoded_spans(text, depth - 1))


def _encoded_spans(text: str, depth: int) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` that decode (base64 or percent-encoding) to a secret."""
    if "%" in text:
        for m in _PCT_RUN.finditer(text):
            if _holds_secret(_pct_decode(m.group()), depth):
                yield m.span()
    # One alphabet per run: base64 decoders skip the other alphabet's characters, which
    # would shift every byte after them.
    for run, urlsafe in ((_B64_RUN, False), (_B64URL_RUN, True)):
        for m in run.finditer(text):
            if any(_holds_secret(d, depth) for d in _b64decode(m.group(), urlsafe)):
                yield m.span()


def _joined(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with its line breaks taken out, and (joined offset, original offset) pairs."""
    parts, marks, pos, j = [], [(0, 0)], 0, 0
    for m in _BREAK.finditer(text):
        parts.append(text[pos:m.start()])
        j += m.start() - pos
        pos = m.end()
        marks.append((j, pos))
    parts.append(text[pos:])
    return "".join(parts), marks


def _withheld(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with every unbroken run longer than MAX_RUN blanked out (offsets kept), and
    those runs' spans.  Such a run is withheld unread: no published value is one, a
    secret or a blob may be, and it bounds what the rules below cost on hostile input."""
    spans = [m.span() for m in _LONG_RUN.finditer(text)]
    for a, b in spans:
        text = text[:a] + " " * (b - a) + text[b:]
    return text, spans


def _scan(text: str) -> list[tuple[int, int]]:
    text, spans = _withheld(text)
    return spans + list(_direct_spans(text)) + list(_encoded_spans(text, 1))


def _spans(text: str) -> list[tuple[int, int]]:
    spans = _scan(text)
    if _BREAK.search(text):
        import bisect

        joined, marks = _joined(text)
        starts = [jm for jm, _ in marks]

        def orig(j: int) -> int:
            jm, om = marks[bisect.bisect_right(starts, j) - 1]
            return om + (j - jm)

        for a, b in _scan(joined):
            spans.append((orig(a), orig(b - 1) + 1))
    return spans


def value_is_secret(value: str) -> bool:
    """True when a value holds a secret anywhere in it (as written, encoded or split over lines)."""
    return bool(_spans(value))


def name_is_secret(name: str) -> bool:
    """True when an environment variable's name says it holds a secret."""
    upper = name.upper()
    if any(word in SECRET_NAME_WORDS for word in upper.split("_")):
        return True
    squashed = upper.replace("_", "")
    return any(part in squashed for part in SECRET_NAME_PARTS)


def redact_value(name: str, value: str) -> str:
    return REDACTED if name_is_secret(name) or value_is_secret(value) else value


def redact_text(text: str) -> str:
    """Mask secrets inside free text; line breaks stay where they were."""
    spans = sorted(_spans(text))
    if not spans:
        return text
    merged = [list(spans[0])]
    for a, b in spans[1:]:
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, pos = [], 0
    for a, b in merged:
        out.append(text[pos:a])
        # One marker per line the secret touches: a split token does not join lines.
        out.append(re.sub(r"[^\r\n]+", REDACTED, text[a:b]))
        pos = b
    out.append(text[pos:])
    return "".join(out)


def redact_doc(doc: Any, _seen: dict[str, str] | None = None) -> Any:
    """A JSON-able document with every string (keys too) passed through :func:`redact_text`."""
    seen = {} if _seen is None else _seen
    if isinstance(doc, str):
        if len(doc) < 8:  # shorter than any rule's shortest secret
            return doc
        if doc not in seen:
            seen[doc] = redact_text(doc)
        return seen[doc]
    if isinstance(doc, dict):
        return {redact_doc(k, seen): redact_doc(v, seen) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [redact_doc(v, seen) for v in doc]
    return doc


def redact_env_text(text: str) -> str:
    """Mask KEY=value lines (GITHUB_ENV style) by name and by value; other lines as free text."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        m = _ENV_LINE.match(body)
        if m:
            out.append(f"{m.group(1)}={redact_value(m.group(1), m.group(2))}" + line[len(body):])
        else:
            out.append(redact_text(line))
    return "".join(out)


def redacted_environ(environ: dict[str, str]) -> dict[str, str]:
    """A copy safe to print or log."""
    return {k: redact_value(k, v) for k, v in environ.items()}
