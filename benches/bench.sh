#!/usr/bin/env bash
# What users feel, in one run, as ratios: Keyward (release) and its PostgreSQL pinned to core 0,
# the load generator (benches/load.rs) to core 1; the limits of core 0 measured in the same run
# (RSA-2048 signs per CPU-second by `openssl speed`, argon2id verifications per CPU-second with
# the configured parameters). Loopback only, bounded (about two minutes of load, one more with a
# million refresh families stored, and four of waiting in benches/storage.sh for tokens to expire).
# Writes its tables into docs/BENCHMARKS.md between the bench:latest markers.
#   benches/bench.sh [seconds-per-scenario] [sign-ins]      (run by `make bench`)
# BENCH_ONLY=NAME runs only the scenarios whose name contains NAME and leaves the docs alone;
# BENCH_PROFILE=FILE records the server with `perf record` meanwhile (BENCH_PERF_ARGS: its call-graph
# options, `--call-graph dwarf,16384` unless set; `-g` distorts the rounds less).
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
  perf record -F 1000 ${BENCH_PERF_ARGS:---call-graph dwarf,16384} -o "$BENCH_PROFILE" -p "$server" >/dev/null 2>&1 &
  perf_pid=$!
fi
out=$(taskset -c 1 "$gen" run "http://127.0.0.1:$port" "http://127.0.0.1:$metrics_port" "$server" \
  "$id" "$secret" "$user" "$password" "$secs" "$sign_ins" 0)
printf '%s\n' "$out"
if [ -n "${BENCH_PROFILE:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
[ -z "${BENCH_ONLY:-}" ] || exit 0

# The refresh rounds again with a million more families stored, inserted here outside the timed
# part (the bench's client and user, live, each at some generation): a rotation finds its family
# by primary key, so the table's size should barely show.
families=${BENCH_FAMILIES:-1000000}
psql -qAt "$DATABASE_URL" >/dev/null <<SQL
INSERT INTO refresh_families (id, client_id, user_id, scopes, audiences, auth_time, created_at,
    absolute_expires_at, amr, generation, token_scopes, token_expires_at, rotated_at)
SELECT gen_random_uuid(), '$id', u.id, '{offline_access,api:read}', '{}', now(), now(),
    now() + interval '30 days', '{pwd}', (random() * 100)::int, '{offline_access,api:read}',
    now() + interval '14 days', now()
FROM users u, generate_series(1, $families) WHERE u.username = '$user-0';
VACUUM ANALYZE refresh_families;
-- Written out now: otherwise the checkpointer writes the loaded pages during the rounds, and its
-- CPU counts as the rotations'.
CHECKPOINT;
SQL
stored=$(psql -qAt "$DATABASE_URL" -c 'SELECT count(*) FROM refresh_families')
large=$(BENCH_ONLY=refresh taskset -c 1 "$gen" run "http://127.0.0.1:$port" \
  "http://127.0.0.1:$metrics_port" "$server" "$id" "$secret" "$user" "$password" "$secs" 0 0)
large="With $stored families stored ($families inserted before the rounds):

$large"
printf '\n%s\n' "$large"
kill "$server" 2>/dev/null || true
server=""

# Bytes kept per rotation, in a database of its own (benches/storage.sh, about four minutes).
base=${DATABASE_URL%/*}
psql -qAt "$base/postgres" -c 'DROP DATABASE IF EXISTS keyward_storage' -c 'CREATE DATABASE keyward_storage' >/dev/null
storage=$(DATABASE_URL=$base/keyward_storage benches/storage.sh "$bin")
psql -qAt "$base/postgres" -c 'DROP DATABASE keyward_storage' >/dev/null
printf '\n%s\n' "$storage"
out="$out

$large

$storage"
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
