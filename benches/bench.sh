#!/usr/bin/env bash
# What users feel, in one run, as ratios: Keyward (release) and its PostgreSQL pinned to core 0,
# the load generator (benches/load.rs) to core 1; the limits of core 0 measured in the same run
# (RSA-2048 signs per CPU-second by `openssl speed`, argon2id verifications per CPU-second with
# the configured parameters). Loopback only, bounded (about two minutes of load). Writes its table
# into docs/BENCHMARKS.md between the bench:latest markers.
#   benches/bench.sh [seconds-per-scenario] [sign-ins]      (run by `make bench`)
# BENCH_ONLY=NAME runs only the scenarios whose name contains NAME and leaves the docs alone;
# BENCH_PROFILE=FILE records the server with `perf record` meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}
sign_ins=${2:-500}
[ "$(nproc)" -ge 2 ] || { echo "make bench needs two cores (server, load generator)" >&2; exit 1; }
cargo build --release --locked -q
cargo bench --locked --bench load --no-run -q 2>/dev/null
gen=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
# A cluster with PostgreSQL's default durability (the tests' own runs with fsync off): a refresh
# is a durable write, and the numbers should be what production pays for it. Created afresh for
# every run, so that no run measures tables an earlier one filled.
if [ -z "${DATABASE_URL:-}" ]; then
  KEYWARD_PG_DURABLE=1 .ci/pg reset
  DATABASE_URL=$(KEYWARD_PG_DURABLE=1 .ci/pg url)
fi
export DATABASE_URL
bin=./target/release/keyward
$bin migrate >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
id="bench-$RANDOM$RANDOM"
user="bench$RANDOM$RANDOM"
password="bench $RANDOM password $RANDOM"
creds=$($bin clients create --name "Benchmark" --id "$id" --redirect-uri https://bench.invalid/cb \
  --grant refresh_token --grant password --grant client_credentials \
  --scope "openid offline_access api:read" 2>/dev/null)
secret=$(printf '%s\n' "$creds" | awk -F'\t' '$1=="client_secret"{print $2}')
# One user per request in flight, hashed with the server's argon2 parameters (the defaults
# unless KEYWARD_ARGON2_* are set).
for i in $(seq 0 15); do
  printf '%s\n' "$password" | $bin users create --username "$user-$i" --password-stdin >/dev/null
done
# PostgreSQL on core 0 with the server: its backends fork from the postmaster and inherit this.
pg_pids=$(pgrep -x postgres || true)
for p in $pg_pids; do taskset -pc 0 "$p" >/dev/null; done
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  for p in $pg_pids; do taskset -pc 0-"$(($(nproc) - 1))" "$p" >/dev/null 2>&1 || true; done
  $bin clients delete "$id" >/dev/null 2>&1 || true
  for i in $(seq 0 15); do $bin users delete "$user-$i" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
# Rate limits off (one address makes every request); logs as in production (info, JSON), to
# /dev/null, so the access log's cost is in the numbers.
KEYWARD_BIND=127.0.0.1:$port KEYWARD_ISSUER=http://127.0.0.1:$port \
  KEYWARD_METRICS_BIND=127.0.0.1:$metrics_port KEYWARD_LOG=info KEYWARD_LOG_FORMAT=json \
  KEYWARD_LIMIT_TOKEN_PER_IP=off KEYWARD_LIMIT_TOKEN_PER_CLIENT=off KEYWARD_LIMIT_SIGN_IN_PER_IP=off \
  KEYWARD_LIMIT_SIGN_IN_GLOBAL=off \
  taskset -c 0 $bin serve >/dev/null 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
if [ -n "${BENCH_PROFILE:-}" ]; then
  perf record -F 1000 --call-graph dwarf,16384 -o "$BENCH_PROFILE" -p "$server" >/dev/null 2>&1 &
  perf_pid=$!
fi
out=$(taskset -c 1 "$gen" run "http://127.0.0.1:$port" "http://127.0.0.1:$metrics_port" "$server" \
  "$id" "$secret" "$user" "$password" "$secs" "$sign_ins" 0)
printf '%s\n' "$out"
if [ -n "${BENCH_PROFILE:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
[ -z "${BENCH_ONLY:-}" ] || exit 0
python3 - "$out" "$secs" "$sign_ins" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import sys, datetime, subprocess
out, secs, sign_ins, commit = sys.argv[1:5]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
section = f"""<!-- bench:latest:start -->
Run of {datetime.date.today()} at commit `{commit}`, {cpu}, `make bench` ({secs} s per scenario,
{sign_ins} sign-ins; Keyward + PostgreSQL on core 0, the generator on core 1, 16 requests in
flight):

{out}
<!-- bench:latest:end -->"""
path = "docs/BENCHMARKS.md"
text = open(path).read()
start, end = text.find("<!-- bench:latest:start -->"), text.find("<!-- bench:latest:end -->")
if start >= 0 and end >= 0:
    text = text[:start] + section + text[end + len("<!-- bench:latest:end -->"):]
else:
    text += "\n## Latest `make bench`\n\n" + section + "\n"
open(path, "w").write(text)
PY
