#!/usr/bin/env bash
# `make demo`: Keyward, notes-api and the example SPA on this machine, then the one URL to open.
# Keyward on http://127.0.0.1:8080 (the database of `make run`), notes-api on :4000, the SPA on
# http://localhost:3000 (registered once as the public client `notes-spa`). Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
K=./target/release/keyward
export DATABASE_URL=${DATABASE_URL:-$(.ci/pg url)}
export KEYWARD_ISSUER=http://127.0.0.1:8080
API=http://127.0.0.1:4000
SPA=http://localhost:3000

# Its ports must be free before anything starts: a server already there (`make run` holds 8080 and
# the metrics port 9464) would answer the readiness checks in the demo's place, and the demo would
# print its URL and stop. Say who holds each, and stop.
holder() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null \
    | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
}
busy=0
for port in 8080 9464 4000 3000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    who=$(holder "$port")
    echo "demo: port $port is in use${who:+ by $who}" >&2
    busy=1
  fi
done
if [ "$busy" = 1 ]; then
  echo "demo: stop what holds them (a 'make run' in another terminal?) and run 'make demo' again" >&2
  exit 1
fi

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

# Waits until URL answers (any status; `ready` asks for a 2xx), or gives up when PID has ended.
wait_for() {
  local fail=()
  [ "${4:-}" = ready ] && fail=(-f)
  until curl -s "${fail[@]}" -o /dev/null "$1"; do
    kill -0 "$2" 2>/dev/null || { echo "demo: $3 did not start" >&2; exit 1; }
    sleep 0.2
  done
}

$K serve & pids+=($!)
wait_for "$KEYWARD_ISSUER/readyz" "${pids[-1]}" keyward ready
if ! $K clients show notes-spa >/dev/null 2>&1; then
  $K clients create --name "Notes (example SPA)" --id notes-spa --public \
    --grant authorization_code --grant refresh_token \
    --redirect-uri "$SPA/callback" --post-logout-redirect-uri "$SPA/" \
    --scope "openid profile offline_access notes:read notes:write" --audience "$API" >/dev/null
fi
(cd examples/notes-api && NOTES_AUDIENCE=$API NOTES_ALLOWED_ORIGINS=$SPA PORT=4000 exec node server.js) &
pids+=($!)
wait_for "$API/notes" "${pids[-1]}" notes-api
(cd examples/spa && NOTES_API=$API NOTES_AUDIENCE=$API PORT=3000 exec node server.js) &
pids+=($!)
wait_for "$SPA/" "${pids[-1]}" spa

cat <<MSG

  Open $SPA

  Sign in (or create an account) on Keyward's page, allow the app, add a note. The access
  token lasts 10 minutes; the app then refreshes it once for all its tabs. Ctrl-C stops all three.

MSG
wait -n "${pids[@]}"
