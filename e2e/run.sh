#!/usr/bin/env bash
# Browser end-to-end tests: a deposit in headless Chromium through the sandbox PSP's hosted card
# and 3-D Secure pages (e2e/deposit.test.mjs). Installs what it needs; runs with no standard input.
#
#   bash e2e/run.sh                      # builds kassa (cargo build -p kassa) unless KASSA_BIN is set
#   KASSA_BIN=path/to/kassa bash e2e/run.sh
#   CHROMIUM_PATH=/path/to/chromium bash e2e/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

chromium_path="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium_path" ]; then
  if [ -n "${CHROMIUM_PATH:-}" ]; then
    echo "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2
    exit 1
  fi
  echo "chromium is missing; installing Debian's chromium"
  apt-get update -qq </dev/null
  apt-get install -y -qq chromium </dev/null
fi
export CHROMIUM_PATH="$chromium_path"
"$CHROMIUM_PATH" --version 2>/dev/null || true

echo "node $(node --version), npm $(npm --version 2>/dev/null)"
(cd e2e && npm ci --no-audit --no-fund --prefer-offline --loglevel=error </dev/null)

if [ -z "${KASSA_BIN:-}" ]; then
  echo "KASSA_BIN is unset; building kassa"
  cargo build -p kassa
  export KASSA_BIN="${CARGO_TARGET_DIR:-target}/debug/kassa"
fi
if [ ! -x "$KASSA_BIN" ]; then
  echo "KASSA_BIN=$KASSA_BIN is not an executable" >&2
  exit 1
fi
KASSA_BIN="$(cd "$(dirname "$KASSA_BIN")" && pwd)/$(basename "$KASSA_BIN")"
export KASSA_BIN
echo "KASSA_BIN=$KASSA_BIN"

status=0
node --test e2e/ </dev/null || status=$?
exit "$status"
