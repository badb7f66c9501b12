#!/usr/bin/env bash
# Token endpoint throughput over real HTTP (client_credentials: TCP, HTTP parsing, client
# authentication, one indexed read, RS256 signing), next to raw OpenSSL RSA-2048 signing measured
# in the same run. Loopback only, bounded in time. Needs wrk (Debian: apt-get install wrk).
#   benches/token_endpoint.sh [seconds]      (run by `make bench-http`)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q
export DATABASE_URL=${DATABASE_URL:-$(.ci/pg url)}
bin=./target/release/keyward
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
id="bench-$RANDOM$RANDOM"
creds=$($bin clients create --name "Benchmark" --id "$id" --redirect-uri https://bench.invalid/cb \
  --grant client_credentials --scope "api:read" 2>/dev/null)
secret=$(printf '%s\n' "$creds" | awk -F'\t' '$1=="client_secret"{print $2}')
KEYWARD_BIND=127.0.0.1:$port KEYWARD_ISSUER=http://127.0.0.1:$port KEYWARD_LOG=warn $bin serve >/dev/null 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; $bin clients delete "$id" >/dev/null 2>&1 || true; rm -f "$lua"; }
lua=$(mktemp --suffix=.lua)
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
auth=$(printf '%s:%s' "$id" "$secret" | base64 -w0)
cat > "$lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
LUA
# One check that the request really issues tokens.
curl -sf -X POST -H "Authorization: Basic $auth" -d grant_type=client_credentials \
  "http://127.0.0.1:$port/token" | grep -q access_token
http=$(wrk -t1 -c16 -d"${secs}s" -s "$lua" "http://127.0.0.1:$port/token" | awk '/Requests\/sec/{print $2}')
raw=$(openssl speed -seconds 5 -mr rsa2048 2>/dev/null | awk -F: '/^\+F2:/{print $4}')
printf 'token endpoint (client_credentials, HTTP, wrk -c16, 2 shared cores)  %9.0f tokens/s\n' "$http"
printf 'raw OpenSSL RSA-2048 sign, one core, same run                       %9.0f signs/s\n' "$raw"
python3 -c "print(f'ratio: {float($http)/float($raw):.2f} tokens per raw single-core signature')"
