"""Seeds a fresh Kassa with objects schemathesis can reach: verified players with money,
payments, payouts (some in review), wallet bets. Writes their ids as JSON to argv[2].

    python seed.py http://127.0.0.1:PORT seed.json
Keys come from KASSA_DEMO_API_KEY and KASSA_DEMO_ADMIN_KEY."""

import json
import os
import sys
import urllib.error
import urllib.request

BASE = sys.argv[1]
MERCHANT = os.environ["KASSA_DEMO_API_KEY"]
ADMIN = os.environ["KASSA_DEMO_ADMIN_KEY"]


def call(method, path, body=None, key=MERCHANT, idempotency_key=None, expect=(200, 201)):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    if status not in expect:
        sys.exit(f"seeding failed: {method} {path} answered {status}: {text}")
    return json.loads(text)


players, payments, payouts, debits = [], [], [], []
for n in range(1, 7):
    player_id = f"st-player-{n}"
    jurisdiction = "GB" if n == 6 else "MT"
    call("PUT", f"/v1/players/{player_id}",
         {"currency": "EUR", "country": "MT", "jurisdiction": jurisdiction, "kyc_status": "verified"})
    call("POST", "/v1/wallet/credit",
         {"txn_id": f"st-win-{n}", "player_id": player_id, "amount": "100000.00", "currency": "EUR"})
    for b in range(3):
        txn_id = f"st-bet-{n}-{b}"
        call("POST", "/v1/wallet/debit",
             {"txn_id": txn_id, "player_id": player_id, "amount": "1.00", "currency": "EUR",
              "round_id": f"st-round-{n}"})
        debits.append(txn_id)
    players.append(player_id)

for n, player_id in enumerate(players * 2):
    init = call("POST", "/v1/payments/init",
                {"amount": "25.00", "currency": "EUR", "method": "card", "player_id": player_id,
                 "return_url": "https://casino.example/cashier/done", "meta": {"country": "MT"}},
                idempotency_key=f"st-dep-{n}")
    payments.append(init["payment_id"])

for n, player_id in enumerate(players * 2):
    # Every other payout is large enough for the review queue.
    amount = "20.00" if n % 2 == 0 else "5000.00"
    payout = call("POST", "/v1/payouts/init",
                  {"amount": amount, "currency": "EUR", "method": "card", "player_id": player_id},
                  idempotency_key=f"st-po-{n}")
    payouts.append(payout["payout_id"])

# An outbound webhook endpoint on a name that never resolves (RFC 2606 .invalid): its
# deliveries fail without sending anything anywhere.
# Several, so that a generated DELETE does not leave the other operations nothing to reach.
endpoints = [call("POST", "/v1/webhook-endpoints",
                  {"url": f"https://kassa-webhooks-{n}.invalid/hook", "event_types": ["*"]})["endpoint_id"]
             for n in range(4)]

jobs = [job["job_id"] for job in call("GET", "/v1/admin/jobs?limit=50", key=ADMIN)["data"]]
seed = {"players": players, "payments": payments, "payouts": payouts, "debits": debits,
        "jobs": jobs, "endpoints": endpoints}
with open(sys.argv[2], "w") as out:
    json.dump(seed, out)
print(f"seeded {len(players)} players, {len(payments)} payments, {len(payouts)} payouts, "
      f"{len(debits)} bets, {len(jobs)} jobs, {len(endpoints)} webhook endpoints")
