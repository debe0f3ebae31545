"""Schemathesis hooks for Kassa (loaded through SCHEMATHESIS_HOOKS).

Random ids almost never name an existing object, so most generated requests would end in
401/404. These hooks steer most cases (not all: the rest stay as generated, to keep the
negative paths) towards the objects seed.py created, with the key each path needs, and
count every status answered so the harness can check the share of 2xx.
"""

import ast
import hashlib
import json
import os
import threading

import schemathesis

# CPython 3.11 keeps the AST converter's recursion depth in one global, per process
# (gh-106905): two worker threads inside `ast.parse` at once, one at a deeper stack, fail with
# "SystemError: AST constructor recursion depth mismatch". Hypothesis parses source to
# describe lambdas, so with --workers 2 a run could end in a "Runtime Error" that is neither
# Kassa's nor the test's. Parsing one at a time avoids it.
_AST_PARSE_LOCK = threading.Lock()
_ast_parse = ast.parse


def _parse_one_at_a_time(*args, **kwargs):
    with _AST_PARSE_LOCK:
        return _ast_parse(*args, **kwargs)


ast.parse = _parse_one_at_a_time

SEED = json.load(open(os.environ["KASSA_ST_SEED"]))
STATUS_LOG = os.environ["KASSA_ST_STATUS_LOG"]
MERCHANT_KEY = os.environ["KASSA_DEMO_API_KEY"]
ADMIN_KEY = os.environ["KASSA_DEMO_ADMIN_KEY"]

# Path and query parameters that name existing objects.
KNOWN_IDS = {
    "player_id": SEED["players"],
    "payment_id": SEED["payments"],
    "payout_id": SEED["payouts"],
    "job_id": SEED["jobs"] or ["job_none"],
    "endpoint_id": SEED["endpoints"],
    "name": ["payouts_paused"],
    "provider": ["sandbox"],
}
# Body fields set to values that pass validation, so the request reaches the use case.
VALID_FIELDS = {
    "currency": "EUR",
    "country": "MT",
    "method": "card",
    "return_url": "https://casino.example/cashier/done",
    "kyc_status": "verified",
    "jurisdiction": "MT",
    "url": "https://kassa-webhooks.invalid/hook",
    "event_types": ["*"],
    "since": "2020-01-01T00:00:00Z",
}
STEERED_SHARE_PERCENT = 80


def _steer(case, draw):
    choice, number = draw
    if choice >= STEERED_SHARE_PERCENT:
        return case
    path = case.operation.path
    key = ADMIN_KEY if path.startswith("/v1/admin/") else MERCHANT_KEY
    headers = dict(case.headers or {})
    headers["Authorization"] = f"Bearer {key}"
    if "Idempotency-Key" in headers or path.endswith(("/init", "/refunds")):
        headers["Idempotency-Key"] = f"st-key-{number}"
    case.headers = headers
    if case.path_parameters:
        case.path_parameters = {
            name: _pick(KNOWN_IDS[name], number) if name in KNOWN_IDS else value
            for name, value in case.path_parameters.items()
        }
    if isinstance(case.query, dict):
        # A random cursor is always refused; pages are reached from the first one.
        case.query.pop("cursor", None)
    if isinstance(case.query, dict) and "player_id" in case.query:
        case.query = {**case.query, "player_id": _pick(SEED["players"], number)}
    if isinstance(case.body, dict):
        body = dict(case.body)
        for field, value in VALID_FIELDS.items():
            if field in body:
                body[field] = value
        if "player_id" in body:
            body["player_id"] = _pick(SEED["players"], number)
        if "amount" in body:
            body["amount"] = f"{1 + number % 20}.{number % 100:02d}"
        if "original_txn_id" in body:
            body["original_txn_id"] = _pick(SEED["debits"], number)
        if isinstance(body.get("meta"), dict):
            body["meta"] = {**body["meta"], "country": "MT"}
        for field in ("txn_id", "round_id", "idempotency_key"):
            if field in body and body[field] is not None:
                body[field] = f"st-{field}-{number}"
        # Enrolling a random deposit would only be refused.
        body.pop("payment_id", None)
        if body.get("idempotency_key") is not None:
            body["idempotency_key"] = headers.get("Idempotency-Key", body["idempotency_key"])
        case.body = body
    return case


def _pick(values, number):
    return values[number % len(values)]


@schemathesis.hook
def before_call(context, case, kwargs):
    # Runs in every phase (examples, coverage, fuzzing, stateful). The choice is a hash of
    # the generated case, so the same case is always steered the same way.
    generated = json.dumps(
        [case.method, case.operation.path, case.path_parameters, case.query, case.body],
        sort_keys=True, default=repr,
    )
    digest = int(hashlib.sha256(generated.encode()).hexdigest()[:15], 16)
    _steer(case, (digest % 100, digest // 100 % 10**9))


@schemathesis.hook
def after_call(context, case, response):
    with open(STATUS_LOG, "a") as log:
        log.write(f"{response.status_code} {case.method} {case.operation.path}\n")
