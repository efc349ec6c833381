#!/usr/bin/env bash
# Measures the device agent's resident memory (docs/device.md, "Footprint"): a local `enroll server` on free loopback
# ports in a temporary folder; agents registered against it with an auto-approve token, then left idle; VmRSS, VmHWM and
# the anonymous/file-backed split (/proc/PID/status, /proc/PID/smaps_rollup) sampled every minute.
#
#   scripts/measure-agent.sh --enroll PATH/enroll --agent NAME=COMMAND [--agent NAME=COMMAND ...] [--minutes 10]
#
# COMMAND is run through `sh -c` with the agent's flags appended (for example
# `--agent aot=/tmp/x64/enroll-agent` or `--agent full='/path/enroll device'`, or with variables before it:
# `--agent gen0="DOTNET_GCgen0size=0x400000 /tmp/x64/enroll-agent"`: COMMAND runs through env). Every agent runs `run` in its own state folder.
# The table goes to standard output; everything is stopped and deleted at the end.
set -euo pipefail

enroll=""
minutes=10
names=()
commands=()
while [ $# -gt 0 ]; do
  case "$1" in
    --enroll) enroll="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --agent) names+=("${2%%=*}"); commands+=("${2#*=}"); shift 2 ;;
    *) echo "measure-agent: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$enroll" ] && [ ${#names[@]} -gt 0 ] || { echo "usage: scripts/measure-agent.sh --enroll PATH --agent NAME=COMMAND ... [--minutes N]" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(free_port)
http=$(free_port)
"$enroll" server --mqtt-port "$mqtt" --http-port "$http" --data-dir "$work/server" --log-level Warning >"$work/server.log" 2>&1 &
pids+=($!)
token=""
for _ in $(seq 1 120); do
  if token=$("$enroll" tokens create --org measure --auto-approve --json --server "http://127.0.0.1:$http" --data-dir "$work/server" 2>/dev/null); then break; fi
  sleep 1
done
token=$(printf '%s' "$token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

agent_pids=()
for i in "${!names[@]}"; do
  name=${names[$i]}
  mkdir -p "$work/$name"
  sh -c "exec env ${commands[$i]} run --broker mqtt://127.0.0.1:$mqtt --client-id measure-$name --token $token --state $work/$name/state" >"$work/$name/log" 2>&1 &
  agent_pids+=($!)
  pids+=($!)
done

# Registered: the state folder's status says so (the agents' own status command reads it without changing anything).
for i in "${!names[@]}"; do
  for _ in $(seq 1 120); do
    if "$enroll" device status --state "$work/${names[$i]}/state" >/dev/null 2>&1; then break; fi
    sleep 1
  done
done

sample() { # sample MINUTE
  for i in "${!names[@]}"; do
    local pid=${agent_pids[$i]}
    [ -r "/proc/$pid/status" ] || { printf '%-8s %4s  (exited; log: %s)\n' "${names[$i]}" "$1" "$(tail -n 2 "$work/${names[$i]}/log" | tr '\n' ' ')"; continue; }
    local rss hwm anon file
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    anon=$(awk '/^Anonymous:/ {print $2}' "/proc/$pid/smaps_rollup")
    file=$(awk '/^Rss:/ {r=$2} /^Anonymous:/ {a=$2} END {print r-a}' "/proc/$pid/smaps_rollup")
    printf '%-8s %4s  VmRSS %6.1f MB  VmHWM %6.1f MB  anonymous %6.1f MB  file-backed %6.1f MB\n' "${names[$i]}" "$1" \
      "$(echo "$rss/1024" | bc -l)" "$(echo "$hwm/1024" | bc -l)" "$(echo "$anon/1024" | bc -l)" "$(echo "$file/1024" | bc -l)"
  done
}

echo "agent  minute  (registered at minute 0, then idle)"
sample 0
for minute in $(seq 1 "$minutes"); do
  sleep 60
  sample "$minute"
done
# Where the memory is at the end: the largest mappings of each agent by resident size.
for i in "${!names[@]}"; do
  pid=${agent_pids[$i]}
  [ -r "/proc/$pid/smaps" ] || continue
  echo "--- ${names[$i]}: largest resident mappings (kB)"
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name=$6; if (name=="") name="[anonymous]"} /^Rss:/ {rss[name]+=$2} END {for (n in rss) print rss[n], n}' "/proc/$pid/smaps" | sort -rn | head -n 8
done
