"""The reference offer of Art. 7(4): what is interoperable, on which terms, built from config."""

from __future__ import annotations

from typing import Any

from gateway.config import Config
from gateway.translate.limits import LIMITS, ServiceLimits

E2EE_PROTOCOLS = ["olm.v1"]
GROUP_E2EE_PROTOCOLS = ["megolm.v1"]
# How platform members see group traffic (DESIGN §4.10): WhatsApp publishes group webhooks;
# Messenger and Instagram publish none, so their 1:1 envelopes carry a GROUP `thread`.
_THREAD_EXTENSION = (
    "not published by the service: the 1:1 messaging envelope extended with "
    'thread {id, thread_type: "GROUP"} (a gateway extension)'
)
GROUP_ENVELOPES = {
    "whatsapp": "WhatsApp Cloud API group webhooks: messages with group_id, "
    "group_participants_update",
    "messenger": _THREAD_EXTENSION,
    "instagram": _THREAD_EXTENSION,
}


def _limits(limits: ServiceLimits) -> dict[str, Any]:
    return {
        "text_max": limits.text_max,
        "text_unit": limits.text_unit,
        "caption_max": limits.caption_max,
        "media": {
            kind: {"max_bytes": media.max_bytes, "mime_types": list(media.mime_types)}
            for kind, media in limits.media.items()
        },
    }


def build_offer(
    config: Config,
    *,
    audit_public_key: str | None = None,
    key_transparency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The machine-readable reference offer served at /.well-known/dma-interop."""
    base = config.base_url
    services: dict[str, Any] = {}
    for name, service in config.services.items():
        if not service.enabled:
            continue
        services[name] = {
            "functionalities": {
                fname: {
                    "state": f.state,
                    # A functionality made available keeps its default date in the config.
                    **(
                        {"planned_for": f.planned_for}
                        if f.state == "planned" and f.planned_for
                        else {}
                    ),
                }
                for fname, f in service.functionalities.items()
            },
            "limits": {**_limits(LIMITS[name]), "group_max_members": service.group_max_members},
            "e2ee": {"policy": service.e2ee, "protocols": E2EE_PROTOCOLS},
            "groups": {
                "uri_prefix": f"mimi://{name}/g/",
                "max_members": service.group_max_members,
                "e2ee_protocols": GROUP_E2EE_PROTOCOLS,
                "platform_envelopes": GROUP_ENVELOPES[name],
            },
            "user_uri_prefix": f"mimi://{name}/u/",
        }
    return {
        "provider": "dma-gateway",
        "version": 1,
        "legal_basis": "Regulation (EU) 2022/1925, Article 7",
        "free_of_charge": True,
        "request_deadline_days": config.request_deadline_days,
        "services": services,
        "content_format": {
            "name": "MIMI content",
            "reference": "draft-ietf-mimi-content",
            "media_types": ["application/json", "application/mimi-content"],
        },
        "endpoints": {
            "interop_requests": f"{base}/v1/interop-requests",
            "token": f"{base}/v1/oauth/token",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "openapi": f"{base}/openapi.json",
        },
        "authentication": {
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA"],
            "grant_types_supported": ["client_credentials"],
        },
        "audit": {"public_key": audit_public_key, "algorithm": "Ed25519"},
        # DESIGN §4.12: the key that signs the key transparency log's tree heads.
        "key_transparency": key_transparency,
    }
