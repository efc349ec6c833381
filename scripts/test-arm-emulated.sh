#!/usr/bin/env bash
# Runs the emulated agent test for 32-bit arm (linux-arm, Raspberry Pi OS 32-bit): the same scenario the suite runs for
# arm64 (tests/Enroll.Agent.Tests, EmulatedAgentTests): publish the agent with scripts/publish-agent.sh, run it under
# qemu-arm-static against a local x64 server, register, send with --deliver, kill -9 mid-burst and restart (nothing
# lost, nothing twice), a desired twin value and a command. The suite leaves it out: publishing for linux-arm needs the
# linux-arm runtime pack (Microsoft.NETCore.App.Runtime.linux-arm), which the package registry this project is built
# against does not serve (scripts/publish-agent.sh says so), and the 32-bit agent is a JIT-compiled single file (no
# Native AOT for linux-arm).
#
#   scripts/test-arm-emulated.sh
#
# Installs (as root, with apt-get, when missing) qemu-user-static and the armhf runtime libraries (multiarch: libc6,
# libstdc++6, libssl3 for armhf). Ends with the test's own "N passed, N failed" and its time.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v qemu-arm-static >/dev/null 2>&1 || packages+=(qemu-user-static)
if [ ! -e /lib/ld-linux-armhf.so.3 ] || [ ! -e /usr/lib/arm-linux-gnueabihf/libssl.so.3 ] || [ ! -e /usr/lib/arm-linux-gnueabihf/libstdc++.so.6 ]; then
  packages+=(libc6:armhf libstdc++6:armhf libgcc-s1:armhf libssl3:armhf)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  dpkg --print-foreign-architectures | grep -qx armhf || "${sudo_cmd[@]}" dpkg --add-architecture armhf
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

dotnet build tests/Enroll.Agent.Tests -c Release -nologo -clp:ErrorsOnly
start=$(date +%s)
status=0
ENROLL_TEST_ARM32=1 dotnet test tests/Enroll.Agent.Tests -c Release --no-build --nologo \
  --filter "FullyQualifiedName~EmulatedAgentTests.Arm32" --logger "console;verbosity=normal" || status=$?
echo "linux-arm under qemu: $(( $(date +%s) - start )) s (publish included)"
if [ "$status" -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit "$status"
