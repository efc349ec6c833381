#!/usr/bin/env bash
# Runs the whole Enroll test suite on a Debian machine with the .NET 10 SDK.
#
# It installs what the tests need when it is missing (Debian packages, through apt-get), builds everything with
# warnings as errors, runs every test project, and ends with one line: "N passed, N failed".
# The servers tests need (embedded brokers, Mosquitto, ...) are started and stopped by the tests themselves,
# on free loopback ports in temporary folders.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- 1. Debian packages the tests use -----------------------------------------------------------------------------
packages=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || packages+=(mosquitto)
have mosquitto_rr || packages+=(mosquitto-clients)
# PostgreSQL: the tests run initdb/pg_ctl themselves in a temporary folder on a free port (never the system cluster).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
# libfaketime: the fault matrix skews the device agent's clock a day ahead and behind (LD_PRELOAD, that process only).
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || packages+=(faketime)
# Chromium: the console's browser tests drive Debian's build through Playwright (never a downloaded browser).
[ -x /usr/bin/chromium ] || packages+=(chromium)
# The agent's package and emulation tests (tests/Enroll.Agent.Tests): qemu-user runs the arm64 agent against the x64
# server. binfmt_misc may not be registerable (containers): the tests call qemu-aarch64-static explicitly.
have qemu-aarch64-static || packages+=(qemu-user-static)
have update-binfmts || packages+=(binfmt-support)
have shellcheck || packages+=(shellcheck)
# The agent is published with Native AOT inside those tests (scripts/publish-agent.sh): clang links it, and the arm64
# build is cross-linked with lld against Debian's arm64 cross C runtime.
have clang || packages+=(clang)
[ -e /usr/include/zlib.h ] || packages+=(zlib1g-dev)
have ld.lld || packages+=(lld)
have aarch64-linux-gnu-gcc || packages+=(gcc-aarch64-linux-gnu)
have aarch64-linux-gnu-objcopy || packages+=(binutils-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.so ] || packages+=(libc6-dev-arm64-cross)
# scripts/build-deb.sh reads the libraries the agent links (Depends) with readelf.
have readelf || packages+=(binutils)
# The arm64 agent's own runtime libraries, from Debian's arm64 archive (multiarch, beside the host's): its loader, libc,
# libstdc++/libgcc, and OpenSSL (TLS, token signatures). qemu then finds them where an arm64 Debian keeps them.
foreign=()
if [ ! -e /lib/ld-linux-aarch64.so.1 ] || [ ! -e /usr/lib/aarch64-linux-gnu/libssl.so.3 ] || [ ! -e /usr/lib/aarch64-linux-gnu/libstdc++.so.6 ]; then
  foreign+=(arm64)
  packages+=(libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64 libssl3:arm64)
fi
if [ ${#packages[@]} -gt 0 ]; then
  log "Installing ${packages[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  # Package scripts must not start system-wide services (they would take port 1883); tests start their own.
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  for architecture in "${foreign[@]}"; do
    dpkg --print-foreign-architectures | grep -qx "$architecture" || "${sudo_cmd[@]}" dpkg --add-architecture "$architecture"
  done
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
  # postgresql-common creates a "main" cluster; with RUNLEVEL=1 it is not started, but stop it if it was (port 5432).
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" { print $1, $2 }' | while read -r version cluster; do
      "${sudo_cmd[@]}" pg_ctlcluster "$version" "$cluster" stop || true
    done
  fi
fi

# --- 2. Build --------------------------------------------------------------------------------------------------------
log "Building (Release, warnings are errors)"
dotnet build Enroll.slnx -c Release -nologo -clp:ErrorsOnly

# --- 3. Test ---------------------------------------------------------------------------------------------------------
results=artifacts/test-results
rm -rf "$results"
mkdir -p "$results"
log "Running tests"
set +e
# A test that hangs is dumped and killed after 40 minutes: the agent's package and emulation tests publish the agent
# (Native AOT, minutes on a busy machine) inside their first test, and each of their steps has its own shorter limit.
dotnet test Enroll.slnx -c Release --no-build --nologo \
  --results-directory "$results" \
  --logger "trx" \
  --logger "console;verbosity=normal" \
  --blame-hang-timeout 40m
test_exit=$?
set -e

# --- 4. Summary ------------------------------------------------------------------------------------------------------
passed=0
failed=0
shopt -s nullglob
trx_files=("$results"/*.trx)
for trx in "${trx_files[@]}"; do
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(printf '%s' "$counters" | sed -n 's/.* passed="\([0-9]*\)".*/\1/p')
  f=$(printf '%s' "$counters" | sed -n 's/.* failed="\([0-9]*\)".*/\1/p')
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
done
if [ ${#trx_files[@]} -eq 0 ] || { [ "$test_exit" -ne 0 ] && [ "$failed" -eq 0 ]; }; then
  # The run broke before reporting (crash, hang, missing results): count it as a failure, never as a pass.
  failed=$((failed + 1))
fi
if [ "$failed" -gt 0 ]; then
  # Name what failed right above the count, so the tail of a CI log says which test and why.
  echo
  echo "Failed tests:"
  for trx in "${trx_files[@]}"; do
    # A results file without failures matches nothing: never let that end the script (set -e, pipefail).
    { grep -o '<UnitTestResult [^>]*outcome="Failed"[^>]*>' "$trx" | sed -n 's/.*testName="\([^"]*\)".*/  \1/p'; } || true
    # The first 300 characters of each failure's message (trx keeps it in <Message>).
    { tr '\n' ' ' <"$trx" | grep -o '<Message>[^<]*</Message>' | sed 's/<[^>]*>//g' | cut -c1-300 | sed 's/^/    /'; } || true
  done
fi
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
