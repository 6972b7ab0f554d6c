"""Recognising values shaped like secrets, so configuration can refuse them without showing them.

Shapes (public formats):
- Azure DevOps personal access tokens: the classic 52 characters of lower-case base32, and the
  84-character format introduced in 2024 (letters and digits);
  https://learn.microsoft.com/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate
- JSON Web Tokens (Entra access and id tokens): three base64url parts, the first two JSON objects,
  so they start with "eyJ"; https://www.rfc-editor.org/rfc/rfc7519
- other long random-looking runs (client secrets, storage keys, SAS signatures): 32 characters or
  more of varied symbols where letters and digits alternate like random text, unlike names and
  words; and long hexadecimal keys. Paths are only checked for the token shapes above: folder
  names are free text and would be refused by mistake.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_LEGACY_PAT = re.compile(r"[a-z2-7]{52}")
_PAT_84 = re.compile(r"[A-Za-z0-9]{84}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_KEY = re.compile(r"(?=.*[0-9])(?=.*[a-fA-F])[0-9a-fA-F]{32,}")
# Runs between the separators of URLs and sentences ("/" stays: base64 holds it; paths split on it).
_RUN = re.compile(r"[^\s\\:@?&,;'\"()\[\]{}<>|]{32,}")
_PATH_PART = re.compile(r"[^\s/\\]{52,}")
_MIN_ENTROPY = 4.2  # bits per character: random base64/base62 of 32+ characters is above, words below
_MIN_SWITCHES = 0.25  # share of letter/digit class changes: random text ~0.45, names and words ~0.1
_WORD = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}")
_MAX_WORDS = 0.55  # share of letters and digits inside words (Fabrikam, PROD): random text ~0.3, names ~0.7


def looks_like_secret(value: str, *, path: bool = False) -> str | None:
    """What kind of secret `value` looks like ("an Azure DevOps personal access token", ...), or None.

    path: the value is a file or folder path (only the token shapes are checked, per folder name).
    """
    if _JWT.search(value):
        return "a JSON Web Token"
    for part in _PATH_PART.findall(value) if path else _RUN.findall(value):
        if (_LEGACY_PAT.fullmatch(part) and sum(c.isdigit() for c in part) >= 3) or _PAT_84.fullmatch(part):
            return "an Azure DevOps personal access token"
        if path or _GUID.fullmatch(part):
            continue
        if _HEX_KEY.fullmatch(part) or _random_looking(part):
            return "a secret (a long random string)"
    return None


def _random_looking(text: str) -> bool:
    in_words = sum(len(w) for w in _WORD.findall(text)) / max(1, sum(c.isalnum() for c in text))
    return _entropy(text) >= _MIN_ENTROPY and _switches(text) >= _MIN_SWITCHES and in_words < _MAX_WORDS


def _entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _switches(text: str) -> float:
    """How often consecutive letters/digits change class (lower, upper, digit); punctuation is skipped
    and an upper-case letter followed by lower-case ones (a capitalised word) is no change."""
    classes = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in text if c.isalnum()]
    if len(classes) < 2:
        return 0.0
    changes = sum(a != b and (a, b) != ("u", "l") for a, b in itertools.pairwise(classes))
    return changes / (len(classes) - 1)
