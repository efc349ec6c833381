#!/usr/bin/env bash
# enroll bench register on a scale-out deployment on this machine: Mosquitto + PostgreSQL + N enroll server processes.
#
#   scripts/bench-scaleout.sh [INSTANCES...] [-- BENCH OPTIONS...]
#   scripts/bench-scaleout.sh 1 2 -- --runs 3 --duration 5s
#
# Starts, in one temporary folder, on free loopback ports:
#   - Mosquitto (set_tcp_nodelay true), anonymous on 127.0.0.1 only: the bench's load clients and the servers connect
#     without credentials (no ACL, no dynamic security: the broker's own access control is not what is measured);
#   - PostgreSQL (initdb/pg_ctl, fsync on, trust on loopback; as the postgres user when run as root), database "bench";
# then, for each INSTANCES count (default: 1 then 2), runs
#   enroll bench register --broker mqtt://127.0.0.1:PORT --database ... --instances N BENCH OPTIONS
# which starts N enroll server processes (--broker, --database, --broker-client-id bench-srvI) sharing the first one's
# admin key and one key-encryption key (ENROLL_KEY_ENCRYPTION_KEY, made here once, so every count finds the keys it sealed),
# runs the raw echo and the registrations on Mosquitto, and reports the CPU time each instance used.
# Everything is stopped and removed on exit. The enroll it runs is src/Enroll.Cli's Release build (ENROLL=... to override).
set -euo pipefail
cd "$(dirname "$0")/.."

counts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do counts+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#counts[@]} -gt 0 ] || counts=(1 2)

enroll=${ENROLL:-src/Enroll.Cli/bin/Release/net10.0/enroll}
[ -x "$enroll" ] || { echo "no $enroll: dotnet build src/Enroll.Cli -c Release" >&2; exit 1; }
pg_bin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosquitto" ] || { echo "Mosquitto is not installed (apt-get install mosquitto)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_postgres=()
if [ "$(id -u)" -eq 0 ]; then as_postgres=(runuser -u postgres --); fi

work=$(mktemp -d)
chmod 755 "$work"
mosquitto_pid=
cleanup() {
  if [ -n "$mosquitto_pid" ]; then kill "$mosquitto_pid" 2>/dev/null || true; fi
  if [ -f "$work/pg/data/postmaster.pid" ]; then "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# --- Mosquitto ---------------------------------------------------------------------------------------------------------
mqtt_port=$(free_port)
cat > "$work/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 10000
persistence false
CONF
"$mosquitto" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosquitto_pid=$!

# --- PostgreSQL --------------------------------------------------------------------------------------------------------
pg_port=$(free_port)
mkdir -p "$work/pg/data" "$work/pg/run"
if [ ${#as_postgres[@]} -gt 0 ]; then chown postgres "$work/pg/data" "$work/pg/run"; fi
"${as_postgres[@]}" "$pg_bin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
"${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -w -l "$work/pg/run/log" \
  -o "-p $pg_port -k $work/pg/run -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200" start >/dev/null
"${as_postgres[@]}" "$pg_bin/psql" -h "$work/pg/run" -p "$pg_port" -U postgres -qc "CREATE DATABASE bench" postgres
database="Host=127.0.0.1;Port=$pg_port;Database=bench;Username=postgres"
# The servers' keys are sealed in the database under this key; every count's instances are given the same one.
export ENROLL_KEY_ENCRYPTION_KEY=${ENROLL_KEY_ENCRYPTION_KEY:-$(head -c 32 /dev/urandom | base64)}
# WAL flushes (fsyncs) and write transactions' commits: how many registrations each commit carried.
wal_syncs() { "${as_postgres[@]}" "$pg_bin/psql" -h "$work/pg/run" -p "$pg_port" -U postgres -tAc "SELECT wal_sync FROM pg_stat_wal" postgres; }

for n in "${counts[@]}"; do
  echo "== enroll bench register --instances $n on Mosquitto mqtt://127.0.0.1:$mqtt_port + PostgreSQL $pg_port" >&2
  before=$(wal_syncs)
  "$enroll" bench register --broker "mqtt://127.0.0.1:$mqtt_port" --database "$database" --instances "$n" "$@"
  echo "PostgreSQL WAL flushes (fsync) during the bench: $(( $(wal_syncs) - before ))" >&2
done
