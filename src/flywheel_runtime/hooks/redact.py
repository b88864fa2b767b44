"""Never print or write a value that looks like a secret.

Hooks run with the job's whole environment (GITHUB_TOKEN, ACTIONS_RUNTIME_TOKEN,
registry passwords) and write to places a workflow author can read back
(GITHUB_ENV, the job summary, the log).  A value is withheld when its
variable's *name* says secret (TOKEN, SECRET, PASSWORD, KEY, CREDENTIAL, ...)
or the *value* has a known secret shape (GitHub/GitLab/npm/PyPI tokens, JWTs,
AWS key ids, private-key blocks, credentials in URLs, bearer headers).
Over-redacting a harmless value is cheap; leaking a token is not.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

# Whole words of an environment variable's name (split on _): any of these marks it secret.
SECRET_NAME_WORDS = frozenset({
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "PWD_HASH", "KEY", "KEYS",
    "PRIVATE", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "AUTHORIZATION", "COOKIE", "SESSION", "DSN",
    "APIKEY", "SIGNATURE", "CERT_KEY", "PAT", "OTP", "SALT",
})
# Substrings that mark a name secret even glued to other words (GITHUB_APP_PRIVATE_KEY, NPMTOKEN, DBPASSWORD).
SECRET_NAME_PARTS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "PRIVATEKEY", "APIKEY",
                     "ACCESSKEY")
_VALUE_PATTERNS = (
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub classic, OAuth, user-to-server, server-to-server, refresh tokens
    r"github_pat_[A-Za-z0-9_]{40,}",  # GitHub fine-grained PAT
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab PAT
    r"glrt-[A-Za-z0-9_\-]{20,}",  # GitLab runner token
    r"npm_[A-Za-z0-9]{36}",  # npm automation/publish token
    r"pypi-[A-Za-z0-9_\-]{50,}",  # PyPI API token (macaroon)
    r"dckr_pat_[A-Za-z0-9_\-]{20,}",  # Docker Hub PAT
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT (Actions runtime/OIDC tokens)
    r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}",  # AWS access key ids
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API key
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"sk_live_[A-Za-z0-9]{20,}",  # Stripe
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----)?",
    r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@",  # scheme://user:password@host
    r"(?i:bearer|basic|token)\s+[A-Za-z0-9_\-.=+/]{16,}",  # Authorization header values
)
_VALUE = re.compile("|".join(f"(?:{p})" for p in _VALUE_PATTERNS))
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def name_is_secret(name: str) -> bool:
    """True when an environment variable's name says it holds a secret."""
    upper = name.upper()
    if any(word in SECRET_NAME_WORDS for word in upper.split("_")):
        return True
    squashed = upper.replace("_", "")
    return any(part in squashed for part in SECRET_NAME_PARTS)


def value_is_secret(value: str) -> bool:
    """True when a value has a known secret shape anywhere in it."""
    return bool(_VALUE.search(value))


def redact_value(name: str, value: str) -> str:
    return REDACTED if name_is_secret(name) or value_is_secret(value) else value


def redact_text(text: str) -> str:
    """Mask secret-shaped substrings inside free text."""
    return _VALUE.sub(REDACTED, text)


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
