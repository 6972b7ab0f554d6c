"""Keeping secrets out of text: a process-wide registry of secret values and a redactor.

Credentials register every secret they hold or receive (PAT, client secret, access and refresh
tokens); errors, log messages and stats pass their text through `redact()`. A secret shorter than
8 characters is not registered (it would redact ordinary words; such a value is not a real token).
"""

from __future__ import annotations

import base64
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember `value` (and its Basic-auth encodings) so `redact()` hides it everywhere."""
    if not value or len(value) < 8:
        return
    forms = {value, base64.b64encode(f":{value}".encode()).decode(),
             base64.b64encode(value.encode()).decode()}
    with _lock:
        _secrets.update(forms)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    if not text:
        return text
    with _lock:
        found = [s for s in _secrets if s in text]
    for s in sorted(found, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


class Secret:
    """A string that does not show itself in repr/str/format (use `.reveal()` where needed)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:  # never pickle a secret into run storage
        raise TypeError("Secret values cannot be pickled")
