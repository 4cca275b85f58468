"""Bounded text: every value a user's data can put into a message, a log line or metadata is cut
to a size a person can read and a database can hold, and says that it was cut.

Without this, three 5 MB strings in a category column wrote 165 MB of event metadata and a
1.6 KB spec built from YAML aliases produced a 580 MB error message.
"""

from __future__ import annotations

from typing import Any

# One value shown in a sample (a cell, a column name, a key's value).
VALUE_BYTES = 200
# One message: an error, a check description, a log line, a skip reason.
MESSAGE_BYTES = 4_000
# One metadata entry (a preview table, a JSON list of failures).
METADATA_BYTES = 20_000
# Offending values shown per column or key.
SAMPLE_SIZE = 5


def clip(text: str, limit: int = MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, ending with how much was cut when it was."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    note = f"… [cut: {len(raw):,} bytes, showing {limit:,}]"
    keep = max(limit - len(note.encode()), 0)
    return raw[:keep].decode("utf-8", "ignore") + note


def clip_value(value: Any, limit: int = VALUE_BYTES) -> Any:
    """A sample value safe to show: strings and other long values cut (as text), numbers kept."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    clipped = clip(text, limit)
    return value if clipped is text and isinstance(value, str) else clipped


def sample(values: Any, size: int = SAMPLE_SIZE, limit: int = VALUE_BYTES) -> list[Any]:
    """At most `size` values, each clipped: what a message shows of the offending values."""
    out = []
    for v in values:
        if len(out) >= size:
            break
        out.append(clip_value(v.item() if hasattr(v, "item") else v, limit))
    return out


def fit(items: list[Any], limit: int) -> tuple[list[Any], int]:
    """The first `items` whose JSON takes at most `limit` bytes, and how many were left out: a
    list of batches or failures shown in metadata grows with the data."""
    import json

    used = 0
    for i, item in enumerate(items):
        used += len(json.dumps(item, default=str).encode()) + 2
        if used > limit:
            return list(items[:i]), len(items) - i
    return list(items), 0
