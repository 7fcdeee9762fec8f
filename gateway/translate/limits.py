"""Per-service limits of the native formats (DESIGN §5): one source for offer and translators."""

from __future__ import annotations

import msgspec

MB = 1024 * 1024
KB = 1024


class MediaLimit(msgspec.Struct, frozen=True, kw_only=True):
    """Largest size and accepted MIME types of one native media kind."""

    max_bytes: int
    mime_types: tuple[str, ...]


class ServiceLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one service accepts: text length (in `text_unit`), caption length, media."""

    text_max: int
    text_unit: str  # "chars" (Unicode code points) or "utf8_bytes"
    caption_max: int | None
    media: dict[str, MediaLimit]


WHATSAPP = ServiceLimits(
    text_max=4096,
    text_unit="chars",
    caption_max=1024,
    media={
        "image": MediaLimit(max_bytes=5 * MB, mime_types=("image/jpeg", "image/png")),
        "audio": MediaLimit(
            max_bytes=16 * MB,
            mime_types=("audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"),
        ),
        "video": MediaLimit(max_bytes=16 * MB, mime_types=("video/mp4", "video/3gpp")),
        "document": MediaLimit(max_bytes=100 * MB, mime_types=("*/*",)),
        "sticker": MediaLimit(max_bytes=500 * KB, mime_types=("image/webp",)),
    },
)
WHATSAPP_STATIC_STICKER_MAX = 100 * KB

MESSENGER = ServiceLimits(
    text_max=2000,
    text_unit="chars",
    caption_max=None,
    media={
        kind: MediaLimit(max_bytes=25 * MB, mime_types=("*/*",))
        for kind in ("image", "audio", "video", "file")
    },
)

INSTAGRAM = ServiceLimits(
    text_max=1000,
    text_unit="utf8_bytes",
    caption_max=None,
    media={
        "image": MediaLimit(max_bytes=8 * MB, mime_types=("image/jpeg", "image/png", "image/gif")),
        "audio": MediaLimit(max_bytes=25 * MB, mime_types=("*/*",)),
        "video": MediaLimit(max_bytes=25 * MB, mime_types=("*/*",)),
        "file": MediaLimit(max_bytes=25 * MB, mime_types=("*/*",)),
    },
)

LIMITS: dict[str, ServiceLimits] = {
    "whatsapp": WHATSAPP,
    "messenger": MESSENGER,
    "instagram": INSTAGRAM,
}
SERVICES: tuple[str, ...] = tuple(LIMITS)
