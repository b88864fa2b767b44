"""Never print or write a value that looks like a secret.

A value is withheld when its variable's name says secret (TOKEN, SECRET,
PASSWORD, KEY, CREDENTIAL, ...) or the value itself has a known secret shape
(GitHub tokens, JWTs, AWS keys, private-key blocks, URLs with passwords).
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
_NAME = re.compile(r"(TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|(^|_)KEY($|_)|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION|"
                   r"ACCESS_KEY|API_KEY|DSN)", re.I)
_VALUE = re.compile(
    r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{20,}|"
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}|"
    r"(AKIA|ASIA)[A-Z0-9]{16}|xox[baprs]-[A-Za-z0-9\-]{10,}|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|"
    r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@)"
)


def name_is_secret(name: str) -> bool:
    return bool(_NAME.search(name))


def value_is_secret(value: str) -> bool:
    return bool(_VALUE.search(value))


def redact_value(name: str, value: str) -> str:
    return REDACTED if name_is_secret(name) or value_is_secret(value) else value


def redact_text(text: str) -> str:
    """Mask secret-shaped substrings inside free text."""
    return _VALUE.sub(REDACTED, text)
