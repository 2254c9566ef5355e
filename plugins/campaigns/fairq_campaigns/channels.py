"""The delivery channels: ``log`` and ``webhook``."""
from __future__ import annotations

import json
import logging

from app.hooks import Delivery, DeliveryError, campaigns

from fairq_campaigns import http

__all__ = ["log", "webhook", "webhook_body"]

logger = logging.getLogger(__name__)


def log(delivery: Delivery) -> dict:
    """Record the delivery in the processing log (the runner writes the row); nothing leaves."""
    logger.info("campaign %s delivery %s logged", delivery.campaign_id, delivery.delivery_id,
                extra={"tenant_id": delivery.tenant_id})
    return {"simulated": True}


def webhook_body(delivery: Delivery) -> bytes:
    """The JSON the webhook receives (the exact bytes that are signed)."""
    return json.dumps({
        "event": "campaign.delivery",
        "delivery_id": delivery.delivery_id,
        "campaign_id": delivery.campaign_id,
        "campaign": delivery.campaign_name,
        "run": delivery.run,
        "recipient": delivery.recipient,
        "data": dict(delivery.data),
        "message": delivery.message,
        "attempt": delivery.attempt,
    }, separators=(",", ":"), sort_keys=True, default=str).encode()


def webhook(delivery: Delivery) -> dict:
    """POST the delivery to the tenant's webhook, signed; a 2xx is a success.

    Raises:
      DeliveryError: retryable for a timeout or a 5xx; otherwise (a 4xx, a redirect, a
        refused destination, no webhook set) not.
    """
    target = campaigns.webhook_target(delivery.tenant_id)
    if target is None:
        raise DeliveryError("the tenant has no webhook URL", retryable=False)
    status = http.post_signed(target, webhook_body(delivery), delivery_id=delivery.delivery_id)
    return {"status_code": status}
