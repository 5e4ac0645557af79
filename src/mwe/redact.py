"""Secrets never leave the process: model strings are redacted wherever they are shown or written.

A model string may carry a URL with credentials (`openai:m@http://alice:PASSWORD@host/v1`) or a
secret in its query (`...?api_key=...`). Progress lines, rows.jsonl, summaries, cards, reports
and error messages all go through `redact`, so a colleague opening a results folder never
sees them.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@  or  scheme://token@  (userinfo ends at the last '@' before the path)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#\s]*)@")
_SECRET_KEYS = re.compile(
    r"(?i)(?P<lead>[?&;])(?P<key>[^=&;#\s]*(?:key|token|secret|passw(?:or)?d|pwd|auth|"
    r"signature|sig|credential|session)[^=&;#\s]*)=(?P<value>[^&;#\s]*)")


def redact(text: str) -> str:
    """`text` with URL userinfo and secret-looking query values replaced by ***."""
    if "://" not in text and "=" not in text:
        return text

    def userinfo(m: re.Match[str]) -> str:
        info = m.group("info")
        user, sep, _ = info.partition(":")
        shown = f"{user}:{MASK}" if sep else MASK
        return f"{m.group('scheme')}{shown}@"

    text = _USERINFO.sub(userinfo, text)
    return _SECRET_KEYS.sub(lambda m: f"{m.group('lead')}{m.group('key')}={MASK}", text)
