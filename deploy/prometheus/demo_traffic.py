"""Drives demo traffic through a running `kassa serve` and its sandbox PSP, as players and a
casino would: card deposits across countries and devices (approved, 3-D Secure passed and
failed, declined), a cancel, a refund and payouts. Used by demo.sh.

    python3 demo_traffic.py BASE_URL API_KEY ROUNDS
"""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

# (card, one-time code, country, device): one round's mix.
DEPOSITS = [
    ("4242424242424242", "", "MT", "desktop"),
    ("4242424242424242", "", "MT", "mobile"),
    ("4242424242424242", "", "DE", "mobile"),
    ("4242424242424242", "", "FI", "tablet"),
    ("4000000000003220", "123456", "DE", "desktop"),
    ("4000000000003220", "123456", "FI", "mobile"),
    ("4000000000003220", "000000", "DE", "mobile"),
    ("4000000000009995", "", "MT", "mobile"),
    ("4100000000000019", "", "FI", "desktop"),
    ("4242424242424242", "", "MT", None),
]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


browser = urllib.request.build_opener(NoRedirect)


class Api:
    def __init__(self, base, key):
        self.base, self.key = base, key

    def call(self, method, path, body=None, idempotent=False):
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return json.loads(error.read() or b"null")

    def wait_status(self, path, done, seconds=15):
        deadline = time.time() + seconds
        while time.time() < deadline:
            view = self.call("GET", path)
            if view.get("status") in done:
                return view
            time.sleep(0.1)
        return view


def post_form(url, fields):
    data = urllib.parse.urlencode(fields).encode()
    try:
        browser.open(urllib.request.Request(url, data, method="POST"), timeout=30)
    except urllib.error.HTTPError as redirect:
        return redirect.headers.get("Location", "")
    return ""


def pay_with_card(page, card, otp):
    """The sandbox's card page, and its 3-D Secure page when it asks."""
    location = post_form(
        page, {"card_number": card, "expiry": "12/34", "cvc": "123", "cardholder": "Demo"}
    )
    if "/3ds/" in location:
        post_form(urllib.parse.urljoin(page, location), {"otp": otp})


def deposit(api, player, card, otp, country, device):
    meta = {"country": country}
    if device:
        meta["device"] = device
    started = api.call(
        "POST",
        "/v1/payments/init",
        {
            "amount": "20.00",
            "currency": "EUR",
            "method": "card",
            "player_id": player,
            "return_url": f"{api.base}/cashier/return",
            "meta": meta,
        },
        idempotent=True,
    )
    pay_with_card(started["redirect_url"], card, otp)
    return started["payment_id"]


def one_round(api, round_no):
    ids = []
    for index, (card, otp, country, device) in enumerate(DEPOSITS):
        player = f"demo-player-{index % 7}"
        api.call("PUT", f"/v1/players/{player}", {"currency": "EUR", "country": country})
        ids.append(deposit(api, player, card, otp, country, device))
    done = {"captured", "declined", "failed", "expired", "cancelled"}
    for payment_id in ids:
        api.wait_status(f"/v1/payments/{payment_id}", done)
    # A deposit the player abandons, and a refund of the first approved one.
    started = api.call(
        "POST",
        "/v1/payments/init",
        {
            "amount": "5.00", "currency": "EUR", "method": "card", "player_id": "demo-player-0",
            "return_url": f"{api.base}/cashier/return", "meta": {"country": "MT"},
        },
        idempotent=True,
    )
    api.call("POST", f"/v1/payments/{started['payment_id']}/cancel", {})
    api.call("POST", f"/v1/payments/{ids[0]}/refunds", {"amount": "5.00"}, idempotent=True)
    # Payouts of a verified player.
    player = "demo-payee"
    api.call(
        "PUT",
        f"/v1/players/{player}",
        {"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"},
    )
    api.call(
        "POST",
        "/v1/wallet/credit",
        {"txn_id": f"demo-fund-{round_no}", "player_id": player, "amount": "100.00", "currency": "EUR"},
    )
    for _ in range(2):
        payout = api.call(
            "POST",
            "/v1/payouts/init",
            {"amount": "20.00", "currency": "EUR", "method": "card", "player_id": player},
            idempotent=True,
        )
        api.wait_status(f"/v1/payouts/{payout['payout_id']}", {"paid", "failed"})
    return len(ids) + 1


def main():
    base, key, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    api = Api(base, key)
    for round_no in range(rounds):
        count = one_round(api, round_no)
        print(f"round {round_no + 1}: {count} deposits, a refund, 2 payouts")
        # Scrapes between rounds: a series' first sample is where its rate starts.
        time.sleep(3)


if __name__ == "__main__":
    main()
