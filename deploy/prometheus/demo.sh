#!/usr/bin/env bash
# Runs a real Prometheus scraping a real `kassa serve`, drives deposits, a refund and payouts
# through the sandbox PSP, then evaluates every panel query of deploy/grafana/kassa.json (and
# the alert rules' state) through Prometheus' HTTP API and prints the answers: the dashboard,
# without a Grafana.
#
# Needs: a built `kassa` (KASSA_BIN, default target/debug/kassa), `prometheus` (Debian's
# package), python3. Everything listens on 127.0.0.1 and stops when the script ends.
#   bash deploy/prometheus/demo.sh            # about a minute
#   ROUNDS=3 bash deploy/prometheus/demo.sh   # more traffic
set -euo pipefail
cd "$(dirname "$0")/../.."

KASSA_BIN="${KASSA_BIN:-${CARGO_TARGET_DIR:-target}/debug/kassa}"
PROMETHEUS_BIN="${PROMETHEUS_BIN:-$(command -v prometheus || true)}"
PROMETHEUS_LISTEN="${PROMETHEUS_LISTEN:-127.0.0.1:19090}"
ROUNDS="${ROUNDS:-2}"
[ -x "$KASSA_BIN" ] || { echo "no kassa binary at $KASSA_BIN (cargo build -p kassa, or set KASSA_BIN)" >&2; exit 1; }
[ -n "$PROMETHEUS_BIN" ] || { echo "no prometheus binary (apt-get install prometheus)" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Kassa: a fresh SQLite database, /metrics on its own port, quick sandbox webhooks.
cat >"$work/kassa.toml" <<'TOML'
listen = "127.0.0.1:0"
[rate_limit]
requests_per_second = 0
[sandbox]
webhook_delay_ms = 50
[metrics]
listen = "127.0.0.1:0"
TOML
KASSA_DATABASE_URL="sqlite://$work/kassa.db" KASSA_LOG_FORMAT=json \
  "$KASSA_BIN" serve --config "$work/kassa.toml" >"$work/kassa.out" 2>"$work/kassa.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "^Prometheus metrics at" "$work/kassa.out" 2>/dev/null && break; sleep 0.1; done
base="$(sed -n 's/^Kassa is listening on \(http:[^ ]*\).*/\1/p' "$work/kassa.out")"
metrics="$(sed -n 's/^Prometheus metrics at http:\/\/\([^/]*\)\/metrics/\1/p' "$work/kassa.out")"
api_key="$(sed -n 's/^  merchant API key: //p' "$work/kassa.out")"
[ -n "$base" ] && [ -n "$metrics" ] && [ -n "$api_key" ] || { cat "$work/kassa.out" "$work/kassa.log" >&2; exit 1; }
echo "kassa serve at $base, /metrics at $metrics"

# Prometheus: scrapes every second, evaluates the shipped alert rules.
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: kassa
    static_configs:
      - targets: ['$metrics']
YAML
"$PROMETHEUS_BIN" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="$PROMETHEUS_LISTEN" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
# Ready once it has scraped Kassa: traffic before the first scrape would be no rate.
for _ in $(seq 1 150); do python3 - "$PROMETHEUS_LISTEN" <<'PY' 2>/dev/null && break
import json, sys, urllib.request
url = f"http://{sys.argv[1]}/api/v1/query?query=up%7Bjob%3D%22kassa%22%7D"
result = json.load(urllib.request.urlopen(url, timeout=1))["data"]["result"]
sys.exit(0 if result and result[0]["value"][1] == "1" else 1)
PY
  sleep 0.2
done
echo "prometheus at http://$PROMETHEUS_LISTEN"

python3 deploy/prometheus/demo_traffic.py "$base" "$api_key" "$ROUNDS"
# Enough scrapes after the last request for every rate to see it.
sleep 8
python3 deploy/prometheus/demo_queries.py "http://$PROMETHEUS_LISTEN" deploy/grafana/kassa.json
