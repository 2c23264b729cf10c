#!/usr/bin/env bash
# Boot a real systemd as PID 1 of namespaces of its own, for
# host/tests/all/systemd_unit.rs, with the unit under test installed.
#
#   boot.sh CGROUP STAGE FILES WARDEN
#
# CGROUP: an empty cgroup v2 directory made by the test; this process moves
#   into it, so that systemd's cgroup namespace (and every cgroup it makes)
#   is rooted there.
# STAGE: an empty directory; inside the new mount namespace a tmpfs on it
#   holds an overlay of / (so systemd and the unit write nothing to the
#   machine's files) and the new root.
# FILES: a directory laid out like the root: its files are copied over the
#   new root (the unit, the agent's configuration, the token).
# WARDEN: the agent binary, bound read-only to /usr/bin/warden (where the
#   unit's ExecStart= looks for it); empty for none (host/tests/all/package.rs
#   installs the Debian package inside instead).
#
# What the machine shares with the booted system is kept read-only or
# private: its own network namespace (loopback only), /proc/sys and /sys
# read-only (systemd-sysctl and the like skip themselves, and are masked
# too), a /dev of its own. Everything goes when the namespace's PID 1 dies;
# the test then removes CGROUP.
set -euo pipefail

if [ "${1:-}" != "--inside" ]; then
  cgroup=$1
  echo $$ > "$cgroup/cgroup.procs"
  exec unshare --pid --fork --mount --cgroup --uts --ipc --net --propagation private \
    -- "$0" --inside "${@:2}"
fi

stage=$2 files=$3 warden=$4
mount -t tmpfs -o mode=0755 warden-systemd-test "$stage"
mkdir "$stage/upper" "$stage/work" "$stage/root"
mount -t overlay overlay \
  -o "lowerdir=/,upperdir=$stage/upper,workdir=$stage/work" "$stage/root"
root=$stage/root

mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"

mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"

cp -a "$files/." "$root/"
# Units that would change the machine's kernel settings or clock, were
# they not read-only anyway.
for unit in systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  systemd-modules-load.service systemd-timesyncd.service systemd-random-seed.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
if [ -n "$warden" ]; then
  touch "$root/usr/bin/warden"
  mount --bind -o ro "$warden" "$root/usr/bin/warden"
fi

cd "$root"
mkdir oldroot
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot
# container=: systemd runs as a container's init (no udev, no hardware).
exec env -i container=warden-test /lib/systemd/systemd --unit=warden-test.target
