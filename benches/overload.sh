#!/usr/bin/env bash
# Overload: refresh rotations offered at 1x and 3x the measured capacity (open loop), with JWKS,
# discovery and client_credentials probed at 50/s each meanwhile. Keyward and its PostgreSQL are
# pinned to core 0, the load generator (benches/overload.rs) to core 1. Loopback only, bounded
# (about 40 s of load), and it writes its table into docs/BENCHMARKS.md.
#   benches/overload.sh [seconds-per-phase]      (run by `make bench-overload`)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
cargo build --release --locked -q
cargo bench --locked --bench overload --no-run -q 2>/dev/null
export DATABASE_URL=${DATABASE_URL:-$(.ci/pg url)}
# Cheap argon2 for the bench user and server alike (only to seed 1,500 refresh tokens quickly;
# a stored hash dearer than the server's setting would be refused).
export KEYWARD_ARGON2_MEMORY_KIB=64 KEYWARD_ARGON2_ITERATIONS=1
bin=./target/release/keyward
$bin migrate >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
id="overload-$RANDOM$RANDOM"
user="overload$RANDOM"
password="overload bench $RANDOM pass"
creds=$($bin clients create --name "Overload benchmark" --id "$id" --redirect-uri https://bench.invalid/cb \
  --grant refresh_token --grant password --grant client_credentials --scope "openid offline_access" 2>/dev/null)
secret=$(printf '%s\n' "$creds" | awk -F'\t' '$1=="client_secret"{print $2}')
printf '%s\n' "$password" | $bin users create --username "$user" --password-stdin >/dev/null
# PostgreSQL on core 0 with the server: its backends fork from the postmaster and inherit this.
pg_pids=$(pgrep -x postgres || true)
for p in $pg_pids; do taskset -pc 0 "$p" >/dev/null; done
# Limits off: one address makes every request.
KEYWARD_BIND=127.0.0.1:$port KEYWARD_ISSUER=http://127.0.0.1:$port KEYWARD_LOG=error \
  KEYWARD_LIMIT_TOKEN_PER_IP=off KEYWARD_LIMIT_TOKEN_PER_CLIENT=off KEYWARD_LIMIT_SIGN_IN_PER_IP=off \
  KEYWARD_LIMIT_SIGN_IN_GLOBAL=off \
  taskset -c 0 $bin serve >/dev/null 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  for p in $pg_pids; do taskset -pc 0-"$(($(nproc) - 1))" "$p" >/dev/null 2>&1 || true; done
  $bin clients delete "$id" >/dev/null 2>&1 || true
  $bin users delete "$user" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
gen=$(ls -t target/release/deps/overload-* | grep -v '\.d$' | head -1)
out=$(taskset -c 1 "$gen" "http://127.0.0.1:$port" "$id" "$secret" "$user" "$password" "$secs")
printf '%s\n' "$out"
python3 - "$out" "${KEYWARD_DB_POOL_WAIT:-250ms}" <<'PY'
import sys, datetime, platform, subprocess
out = sys.argv[1]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
section = f"""<!-- overload:start -->
Run of {datetime.date.today()}, {cpu}, `make bench-overload` (Keyward + PostgreSQL on one core,
the generator on the other; pool of 16, `KEYWARD_DB_POOL_WAIT={sys.argv[2]}`):

{out}
<!-- overload:end -->"""
path = "docs/BENCHMARKS.md"
text = open(path).read()
start, end = text.find("<!-- overload:start -->"), text.find("<!-- overload:end -->")
if start >= 0 and end >= 0:
    text = text[:start] + section + text[end + len("<!-- overload:end -->"):]
else:
    text += "\n## Overload: `make bench-overload`\n\n" + section + "\n"
open(path, "w").write(text)
PY
