"""Instagram Direct: `instagram` webhooks and the Send API (see meta.py, meta_content.py).

Unlike Messenger, Instagram reports unsends (`message.is_deleted`) and reads by mid, and has no
delivery receipts; its text limit counts UTF-8 bytes (DESIGN §5).
"""

from __future__ import annotations

from gateway.translate.meta import MetaTranslator

SERVICE = "instagram"
TRANSLATOR = MetaTranslator(SERVICE, "instagram", can_unsend=True, can_deliver=False)
