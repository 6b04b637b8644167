#!/usr/bin/env bash
# Drives a standalone manager with the official Backend.AI client (backend.ai-client 23.9.10, its CLI and SDK) and
# asserts on what they print: the proof that the API is wire-compatible.
#
# The client's venv is cached in $BACKENDAI_CLIENT_VENV (default ~/.cache/backend-ai-rs/client-23.9.10).
# Needs python3 (3.11: newer client releases need 3.12+) and a built `backend-manager` (cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${BACKENDAI_CLIENT_VENV:-$HOME/.cache/backend-ai-rs/client-23.9.10}
if [ ! -x "$venv/bin/backend.ai" ] || [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  # yarl 1.9 and later break this client's request signing.
  "$venv/bin/pip" install --quiet 'backend.ai-client==23.9.10' 'yarl<1.9' 'pytest<9'
fi

manager=${BACKEND_MANAGER_BIN:-target/debug/backend-manager}
[ -x "$manager" ] || cargo build -p backend-manager
data=$(mktemp -d)
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$manager" --data-dir "$data" standalone --bind "127.0.0.1:$port" > "$data/manager.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
  [ -f "$data/credentials.env" ] && break
  kill -0 $pid 2>/dev/null || { cat "$data/manager.log"; exit 1; }
  sleep 0.1
done
# shellcheck disable=SC1091
source "$data/credentials.env"
export BACKEND_ENDPOINT_TYPE=api BACKENDAI_CLI="$venv/bin/backend.ai"
"$venv/bin/pytest" -q -p no:cacheprovider tests/official "$@"
