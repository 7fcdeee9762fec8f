"""Facebook Messenger: `page` webhooks and the Send API (see meta.py, meta_content.py)."""

from __future__ import annotations

from gateway.translate.meta import MetaTranslator

SERVICE = "messenger"
TRANSLATOR = MetaTranslator(SERVICE, "page", can_unsend=False, can_deliver=True)
