"""The one error raised when MIMI content cannot be decoded or built."""

from __future__ import annotations


class ContentError(ValueError):
    """MIMI content is malformed; `field` names the offending field (JSON/CDDL name path)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
