"""The one error raised when a payload cannot be translated."""

from __future__ import annotations


class TranslationError(ValueError):
    """A native or neutral payload is malformed, over a limit or not expressible.

    `field` names the offending field (a JSON path such as `entry[0].messaging[0].message.text`
    or a MIMI field such as `nestedPart.size`) so the HTTP layer can render a 422 naming it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
