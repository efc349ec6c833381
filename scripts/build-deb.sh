#!/usr/bin/env bash
# Builds the enroll-agent Debian package for one architecture with dpkg-deb.
#
#   scripts/build-deb.sh --arch amd64|arm64|armhf [--binary DIR] --out DIR
#
# Without --binary the agent is published first (scripts/publish-agent.sh for the matching runtime); with it, DIR holds
# a published agent (enroll-agent, and any native library it sits beside). Prints the .deb's path on the last line.
# What goes where, and why: docs/packaging.md. The version is the repository's one <Version> (Directory.Build.props).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "build-deb.sh: $*" >&2; exit 1; }
usage() { echo "usage: scripts/build-deb.sh --arch amd64|arm64|armhf [--binary DIR] --out DIR" >&2; exit 2; }

arch='' binary='' out=''
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "build-deb.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
if [ -z "$arch" ] || [ -z "$out" ]; then usage; fi

# Debian architecture -> .NET runtime identifier, and the ELF machine number the binary must carry (e_machine).
case "$arch" in
  amd64) rid=linux-x64; machine=62 ;;
  arm64) rid=linux-arm64; machine=183 ;;
  armhf) rid=linux-arm; machine=40 ;;
  *) die "--arch must be amd64, arm64 or armhf, not '$arch'" ;;
esac
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (Debian package dpkg)"
command -v readelf >/dev/null || die "readelf is missing (Debian package binutils): it reads the libraries the agent links"

version=$(sed -n 's:.*<Version>\([^<]*\)</Version>.*:\1:p' "$repo/Directory.Build.props" | head -n 1)
[ -n "$version" ] || die "no <Version> in $repo/Directory.Build.props"

# The example configuration, installed as the conffile /etc/enroll/agent.json.
config="$repo/deploy/agent/agent.json"
[ -f "$config" ] || die "the example configuration $config is missing"

work=$(mktemp -d "${TMPDIR:-/tmp}/enroll-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "$binary" ]; then
  binary="$work/publish"
  bash "$repo/scripts/publish-agent.sh" --rid "$rid" --out "$binary" >&2 || die "publishing the $rid agent failed"
fi
[ -f "$binary/enroll-agent" ] || die "$binary/enroll-agent does not exist"
found=$(od -An -t u2 -j 18 -N 2 "$binary/enroll-agent" | tr -d ' ')
[ "$found" = "$machine" ] || die "$binary/enroll-agent is not a $arch executable (ELF machine $found, expected $machine)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
root="$work/root"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/enroll" "$root/usr/share/doc/enroll-agent"

# The binary: alone in /usr/bin, or (native libraries beside it, which the runtime looks for next to the real file)
# in /usr/lib/enroll-agent with a relative symlink, so an extracted tree works wherever it lies. Debug symbols stay out.
mapfile -t extras < <(cd "$binary" && find . -mindepth 1 -maxdepth 1 ! -name enroll-agent ! -name '*.pdb' ! -name '*.dbg' ! -name '*.xml' -printf '%P\n' | sort)
if [ ${#extras[@]} -eq 0 ]; then
  install -m 0755 "$binary/enroll-agent" "$root/usr/bin/enroll-agent"
else
  install -d -m 0755 "$root/usr/lib/enroll-agent"
  install -m 0755 "$binary/enroll-agent" "$root/usr/lib/enroll-agent/enroll-agent"
  for extra in "${extras[@]}"; do
    [ -f "$binary/$extra" ] || die "$binary/$extra is not a plain file; the package takes the agent and libraries beside it only"
    install -m 0644 "$binary/$extra" "$root/usr/lib/enroll-agent/$extra"
  done
  ln -s ../lib/enroll-agent/enroll-agent "$root/usr/bin/enroll-agent"
fi

install -m 0644 "$repo/deploy/systemd/enroll-agent.service" "$root/lib/systemd/system/enroll-agent.service"
# Mode 0640 from the start: the postinst gives it to group enroll-agent (it may hold a Provisioning Token).
install -m 0640 "$config" "$root/etc/enroll/agent.json"
install -m 0644 "$repo/deploy/debian/copyright" "$root/usr/share/doc/enroll-agent/copyright"
for doc in packaging.md device.md; do
  if [ -f "$repo/docs/$doc" ]; then install -m 0644 "$repo/docs/$doc" "$root/usr/share/doc/enroll-agent/$doc"; fi
done

# Depends: what the ELF files link (readelf's NEEDED entries, glibc's newest symbol version), plus OpenSSL, which .NET
# opens at run time (no NEEDED entry) for TLS, token signatures and encrypted requests.
glibc=2.17
libs=()
while IFS= read -r -d '' elf; do
  if ! head -c 4 "$elf" | grep -q 'ELF'; then continue; fi
  while read -r needed; do
    case "$needed" in
      libc.so.6|libm.so.6|libdl.so.2|libpthread.so.0|librt.so.1|ld-linux*) libs+=(libc6) ;;
      libgcc_s.so.1) libs+=(libgcc-s1) ;;
      libstdc++.so.6) libs+=(libstdc++6) ;;
      libz.so.1) libs+=(zlib1g) ;;
      libssl.so.3|libcrypto.so.3) ;;
      *) die "$elf links $needed, which this script does not know the Debian package of (add it here)" ;;
    esac
  done < <(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
  newest=$(readelf -V "$elf" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n | tail -n 1)
  if [ -n "$newest" ]; then glibc=$(printf '%s\n%s\n' "$glibc" "$newest" | sort -t. -k1,1n -k2,2n | tail -n 1); fi
done < <(find "$root/usr" -type f -print0)
depends="libc6 (>= $glibc)"
for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
  [ "$lib" = libc6 ] || depends="$depends, $lib"
done
depends="$depends, libssl3 | libssl3t64"

installed=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed/" -e "s/@DEPENDS@/$depends/" \
  "$repo/deploy/debian/control" >"$root/DEBIAN/control"
install -m 0644 "$repo/deploy/debian/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$repo/deploy/debian/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb="$out/enroll-agent_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >&2
echo "$deb"
