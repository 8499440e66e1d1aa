#!/usr/bin/env bash
# Checks that the README's two commands work on a fresh Debian 12 machine: makes a minimal Debian 12 root
# with debootstrap (from the same package mirror this machine's apt uses), clones the committed HEAD of
# this repository into it (with ../shared beside it, read-only, when present), and runs
#   bash scripts/demo.sh && bash scripts/test.sh
# inside it as root with CI=true, so a package the scripts forget to install fails here before it fails
# for a user. Too slow for every CI run (~30-60 min on 2 cores): run it before saying a change to the
# dependencies or the scripts is done.
# Usage: sudo bash scripts/fresh-check.sh [ROOT_DIR]   (default /var/tmp/moetier-fresh; removed first)
# Env: FRESH_KEEP=1 keeps the root afterwards; FRESH_SKIP_SANITIZE=1 passes MOETIER_SKIP_SANITIZE=1.
# Exit status: that of the commands inside (0: both passed). Log: ROOT_DIR.log beside the root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
root=${1:-/var/tmp/moetier-fresh}
log="$root.log"
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: needs root (debootstrap, chroot and mounts)" >&2; exit 1; }
case "$root" in /|/usr|/usr/*|/etc|/etc/*|"$repo"|"$repo"/*) echo "fresh-check: refusing root dir $root" >&2; exit 1 ;; esac
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
# The mirror this machine's apt uses (deb822 .sources or one-line sources.list).
mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
[ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
[ -n "$mirror" ] || { echo "fresh-check: no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "fresh-check: note: uncommitted changes are not checked (HEAD is cloned)"

mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  if [ "${FRESH_KEEP:-0}" != 1 ]; then rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT
mnt() { mount "$@"; mounts+=("${@: -1}"); }

for m in proc sys dev/pts dev/shm dev work/shared; do umount -l "$root/$m" 2>/dev/null || true; done
rm -rf --one-file-system "$root"
start=$(date +%s)
echo "fresh-check: debootstrap bookworm into $root (log: $log)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$log" 2>&1 || { tail -20 "$log"; exit 1; }
# Same package sources (and keys) as this machine, so the root sees what a fresh install would.
rm -f "$root/etc/apt/sources.list"
mkdir -p "$root/etc/apt/sources.list.d"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] && cp "$f" "$root$f"
done
mnt -t proc proc "$root/proc"
mnt --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"
mnt --bind /dev "$root/dev"
mnt -t devpts devpts "$root/dev/pts"
mnt -t tmpfs tmpfs "$root/dev/shm"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

mkdir -p "$root/work"
git clone -q --no-hardlinks "$repo" "$root/work/moetier"
if [ -d "$repo/../shared" ]; then
  mkdir -p "$root/work/shared"
  mnt --bind "$repo/../shared" "$root/work/shared"; mount -o remount,bind,ro "$root/work/shared"
fi
echo "fresh-check: root ready in $(( $(date +%s) - start )) s; running the README's commands"
set +e
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 CI=true MOETIER_SKIP_SANITIZE="${FRESH_SKIP_SANITIZE:-0}" \
  bash -c 'cd /work/moetier && bash scripts/demo.sh && bash scripts/test.sh' 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e
echo "fresh-check: README commands in a fresh Debian 12 root: exit status $status, $(( $(date +%s) - start )) s in all"
exit "$status"
