"""Drives the official `stripe` Python package for tests/stripe.rs.

Reads one JSON request on stdin, prints one JSON answer:
- {"do": "intent", "api_base", "api_key", "payment_method", "return_url"}:
  create, confirm and retrieve a PaymentIntent.
- {"do": "construct_event", "payload", "header", "secret"}: stripe.Webhook.construct_event.
- {"do": "sign", "payload", "secret", "timestamp"}: the Stripe-Signature header the SDK's
  scheme gives (WebhookSignature._compute_signature over "<t>.<payload>").
"""

import json
import sys

import stripe


def intent(request):
    stripe.api_key = request["api_key"]
    stripe.api_base = request["api_base"]
    stripe.max_network_retries = 0
    created = stripe.PaymentIntent.create(
        amount=1234,
        currency="eur",
        payment_method=request["payment_method"],
        payment_method_types=["card"],
        metadata={"kassa_payment_id": "pay_sdk_interop"},
    )
    confirmed = stripe.PaymentIntent.confirm(created.id, return_url=request["return_url"])
    retrieved = stripe.PaymentIntent.retrieve(created.id)
    try:
        stripe.PaymentIntent.create(
            amount=1234,
            currency="eur",
            confirm=True,
            payment_method="pm_card_chargeDeclinedInsufficientFunds",
        )
        declined = None
    except stripe.CardError as error:
        declined = {"code": error.code, "decline_code": error.error.decline_code,
                    "http_status": error.http_status}
    return {
        "created": {"id": created.id, "status": created.status, "object": created.object,
                    "metadata": created.metadata.to_dict()},
        "confirmed": {"id": confirmed.id, "status": confirmed.status},
        "retrieved": {"id": retrieved.id, "status": retrieved.status,
                      "amount_received": retrieved.amount_received},
        "declined": declined,
    }


def construct_event(request):
    try:
        event = stripe.Webhook.construct_event(
            request["payload"], request["header"], request["secret"]
        )
    except stripe.SignatureVerificationError as error:
        return {"verified": False, "why": str(error)}
    return {"verified": True, "id": event.id, "type": event.type}


def sign(request):
    timestamp = request["timestamp"]
    signed = "%d.%s" % (timestamp, request["payload"])
    signature = stripe.WebhookSignature._compute_signature(signed, request["secret"])
    return {"header": "t=%d,v1=%s" % (timestamp, signature)}


def main():
    request = json.load(sys.stdin)
    answer = {"intent": intent, "construct_event": construct_event, "sign": sign}[request["do"]](request)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
