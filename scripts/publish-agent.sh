#!/usr/bin/env bash
# Publishes the device agent (src/Enroll.Agent, executable enroll-agent) small, for one Linux target:
#
#   scripts/publish-agent.sh --rid linux-x64|linux-arm64|linux-arm --out DIR [--mode aot|single-file]
#
# What comes out in DIR: `enroll-agent` (the executable) and `libe_sqlite3.so` (SQLite, which the state folder's
# databases use; it must sit beside the executable). Nothing else is needed on the device: no .NET runtime.
#
#   linux-x64, linux-arm64  Native AOT (default --mode aot): one native executable, trimmed, no JIT.
#   linux-arm (32-bit)      .NET has no Native AOT for it: a trimmed, self-contained single file (--mode single-file).
#
# Cross-compiling linux-arm64 with Native AOT needs clang, lld, and an arm64 C runtime to link against (Debian's
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, binutils-aarch64-linux-gnu); run as root, this script installs them with
# apt-get when they are missing, else it says what to install. The single-file builds need no native toolchain.
# Exits non-zero with one line saying why when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'publish-agent: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: scripts/publish-agent.sh --rid linux-x64|linux-arm64|linux-arm --out DIR [--mode aot|single-file]\n' >&2; exit 2; }

rid=""
out=""
mode=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rid) [ $# -ge 2 ] || usage; rid="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
    --mode) [ $# -ge 2 ] || usage; mode="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) printf 'publish-agent: unknown argument %s\n' "$1" >&2; usage ;;
  esac
done
[ -n "$rid" ] && [ -n "$out" ] || usage

case "$rid" in
  linux-x64|linux-arm64) mode="${mode:-aot}" ;;
  linux-arm)
    mode="${mode:-single-file}"
    [ "$mode" = "single-file" ] || fail "linux-arm has no Native AOT in .NET; use --mode single-file (the default for it)" ;;
  *) fail "unknown --rid $rid: give linux-x64, linux-arm64 or linux-arm" ;;
esac
case "$mode" in aot|single-file) ;; *) fail "unknown --mode $mode: give aot or single-file" ;; esac

# --- Native toolchain (Native AOT links with clang; an arm64 target needs the arm64 C runtime too) -------------------
host_arch=$(uname -m)
packages=()
missing=()
need() { # need COMMAND-OR-FILE PACKAGE
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -e "$1" ]; then packages+=("$2"); missing+=("$1"); fi
}
if [ "$mode" = "aot" ]; then
  need clang clang
  need /usr/include/zlib.h zlib1g-dev
  if [ "$rid" = "linux-arm64" ] && [ "$host_arch" != "aarch64" ]; then
    need ld.lld lld
    need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
    need aarch64-linux-gnu-objcopy binutils-aarch64-linux-gnu
    need /usr/aarch64-linux-gnu/lib/libc.so libc6-dev-arm64-cross
  fi
fi
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    printf 'publish-agent: installing %s\n' "${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || fail "apt-get update failed; install ${packages[*]} by hand"
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
      || fail "apt-get install ${packages[*]} failed"
  else
    fail "Native AOT for $rid needs ${missing[*]} (Debian packages: ${packages[*]}); install them, run as root to let this script install them, or use --mode single-file"
  fi
fi

# --- Publish ---------------------------------------------------------------------------------------------------------
project=src/Enroll.Agent/Enroll.Agent.csproj
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
props=(-p:InvariantGlobalization=true -p:UseSystemResourceKeys=true -p:DebugType=none)
if [ "$mode" = "aot" ]; then
  props+=(-p:PublishAot=true -p:StripSymbols=true -p:OptimizationPreference=Size)
  if [ "$rid" = "linux-arm64" ] && [ "$host_arch" != "aarch64" ]; then
    # clang links for aarch64 against Debian's cross C runtime (/usr/aarch64-linux-gnu, found through the cross gcc);
    # lld, since the host's ld cannot emit aarch64; the target's objcopy strips the symbols.
    props+=(-p:LinkerFlavor=lld -p:ObjCopyName=aarch64-linux-gnu-objcopy)
  fi
else
  props+=(-p:PublishTrimmed=true -p:PublishSingleFile=true -p:SelfContained=true -p:EnableCompressionInSingleFile=true)
fi

printf 'publish-agent: publishing %s (%s) ...\n' "$rid" "$mode" >&2
if ! dotnet publish "$project" -c Release -r "$rid" -o "$work/out" -nologo -clp:ErrorsOnly "${props[@]}" >"$work/log" 2>&1; then
  tail -n 30 "$work/log" >&2
  if grep -q "NU1101.*Microsoft.NETCore.App.Runtime.$rid" "$work/log"; then
    fail "the package registry has no .NET runtime pack for $rid (Microsoft.NETCore.App.Runtime.$rid), which a self-contained $rid build needs"
  fi
  fail "dotnet publish for $rid ($mode) failed (the lines above say why)"
fi

[ -x "$work/out/enroll-agent" ] || fail "the publish of $rid made no enroll-agent executable"
[ -f "$work/out/libe_sqlite3.so" ] || fail "the publish of $rid made no libe_sqlite3.so (SQLite for $rid)"
mkdir -p "$out"
rm -f "$out/enroll-agent" "$out/libe_sqlite3.so"
cp "$work/out/enroll-agent" "$work/out/libe_sqlite3.so" "$out/"
chmod 0755 "$out/enroll-agent"
chmod 0644 "$out/libe_sqlite3.so"
printf 'publish-agent: %s (%s): %s/enroll-agent (%s bytes), %s/libe_sqlite3.so (%s bytes)\n' "$rid" "$mode" \
  "$out" "$(stat -c %s "$out/enroll-agent")" "$out" "$(stat -c %s "$out/libe_sqlite3.so")" >&2
