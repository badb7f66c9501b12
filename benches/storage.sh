#!/usr/bin/env bash
# Bytes the database keeps per refresh-token rotation: FAMILIES families are rotated ROTATIONS
# times each; before and after, the access tokens are left to expire (a 1-minute TTL, waited
# out, with the minute of leeway past `exp`), `keyward tokens purge` runs, and `VACUUM FULL` compacts the refresh tables, whose
# pg_total_relation_size (heap, indexes, TOAST) is compared. Prints one Markdown line.
#   benches/storage.sh [BIN] [FAMILIES] [ROTATIONS]        (run by benches/bench.sh)
# Needs DATABASE_URL (bench.sh's durable cluster); works with any keyward binary, so the same
# measurement can be taken of an older build. It waits about four minutes for tokens to expire.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-./target/release/keyward}
families=${2:-200}
rotations=${3:-49}
: "${DATABASE_URL:?DATABASE_URL: the database to measure in}"
export DATABASE_URL
$bin migrate >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
id="storage-$RANDOM$RANDOM"
user="storage$RANDOM$RANDOM"
password="storage $RANDOM password $RANDOM"
creds=$($bin clients create --name "Storage benchmark" --id "$id" --redirect-uri https://bench.invalid/cb \
  --grant refresh_token --grant password --scope "openid offline_access api:read" 2>/dev/null)
secret=$(printf '%s\n' "$creds" | awk -F'\t' '$1=="client_secret"{print $2}')
printf '%s\n' "$password" | $bin users create --username "$user" --password-stdin >/dev/null
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  $bin clients delete "$id" >/dev/null 2>&1 || true
  $bin users delete "$user" >/dev/null 2>&1 || true
}
trap cleanup EXIT
KEYWARD_BIND=127.0.0.1:$port KEYWARD_ISSUER=http://127.0.0.1:$port \
  KEYWARD_METRICS_BIND=127.0.0.1:$(free_port) KEYWARD_LOG=warn KEYWARD_ACCESS_TOKEN_TTL=1m \
  KEYWARD_LIMIT_TOKEN_PER_IP=off KEYWARD_LIMIT_TOKEN_PER_CLIENT=off KEYWARD_LIMIT_SIGN_IN_PER_IP=off \
  KEYWARD_LIMIT_SIGN_IN_GLOBAL=off $bin serve >/dev/null 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

# The refresh tables' size once the access tokens issued so far have expired and been purged.
settled_size() {
  # The access TTL (1 minute), plus the minute past `exp` Keyward still accepts a token (purge
  # keeps the records until then), plus a second.
  sleep 121
  $bin tokens purge >/dev/null
  psql -qAt "$DATABASE_URL" -c 'VACUUM FULL refresh_families, refresh_tokens, family_access_tokens' >/dev/null
  psql -qAt "$DATABASE_URL" -c "SELECT sum(pg_total_relation_size(c::regclass)) FROM unnest(
    ARRAY['refresh_families', 'refresh_tokens', 'family_access_tokens']) c
    WHERE to_regclass(c) IS NOT NULL"
}

tokens=$(mktemp)
python3 - "$port" "$id" "$secret" "$user" "$password" "$families" "$tokens" <<'PY'
import base64, http.client, json, sys, urllib.parse
port, cid, secret, user, password, families, out = sys.argv[1:8]
auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
conn = http.client.HTTPConnection("127.0.0.1", int(port))
tokens = []
for _ in range(int(families)):
    body = urllib.parse.urlencode({"grant_type": "password", "username": user, "password": password,
                                   "scope": "offline_access api:read"})
    conn.request("POST", "/token", body, {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse(); data = json.loads(r.read())
    assert r.status == 200, data
    tokens.append(data["refresh_token"])
open(out, "w").write("\n".join(tokens))
PY
before=$(settled_size)
python3 - "$port" "$id" "$secret" "$rotations" "$tokens" <<'PY'
import base64, http.client, json, sys, urllib.parse
port, cid, secret, rotations, path = sys.argv[1:6]
auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
conn = http.client.HTTPConnection("127.0.0.1", int(port))
for token in open(path).read().split():
    for _ in range(int(rotations)):
        body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": token})
        conn.request("POST", "/token", body, {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse(); data = json.loads(r.read())
        assert r.status == 200, data
        token = data["refresh_token"]
PY
rm -f "$tokens"
after=$(settled_size)
total=$((families * rotations))
python3 - "$before" "$after" "$total" "$families" "$rotations" <<'PY'
import sys
before, after, total, families, rotations = map(int, sys.argv[1:6])
print(f"Storage: {families} families rotated {rotations} times each ({total} rotations), access "
      f"tokens expired and purged, VACUUM FULL: the refresh tables went from {before} to {after} "
      f"bytes, **{(after - before) / total:.1f} bytes per rotation**.")
PY
