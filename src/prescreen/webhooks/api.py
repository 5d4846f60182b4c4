"""`/v1/webhook`: each integrator key registers where its decisions are delivered."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role
from prescreen.core.deps import SESSION, require
from prescreen.core.errors import NotFound
from prescreen.webhooks import service

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])
OWNERS = (Role.integrator, Role.lead)


class WebhookSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., max_length=2048, description="http(s) URL that receives decisions")


@router.put("", summary="Set this key's webhook URL; returns a new signing secret, shown once")
def set_webhook(
    body: WebhookSet,
    actor: Actor = Depends(require(*OWNERS)),
    session: Session = SESSION,
) -> dict:
    endpoint, secret = service.set_endpoint(session, actor.key_id, body.url)
    return {"url": endpoint.url, "secret": secret, "signature_header": service.SIGNATURE_HEADER}


@router.get("", summary="This key's webhook URL (the secret is never shown again)")
def get_webhook(
    actor: Actor = Depends(require(*OWNERS)),
    session: Session = SESSION,
) -> dict:
    endpoint = service.get_endpoint(session, actor.key_id)
    if endpoint is None:
        raise NotFound("no webhook is configured for this key")
    return {"url": endpoint.url, "updated_at": endpoint.updated_at.isoformat()}


@router.delete("", status_code=204, summary="Stop webhook deliveries for this key")
def delete_webhook(
    actor: Actor = Depends(require(*OWNERS)),
    session: Session = SESSION,
) -> Response:
    service.delete_endpoint(session, actor.key_id)
    return Response(status_code=204)
