#!/usr/bin/env bash
# Boot a Linux kernel under qemu (TCG, no KVM) with a busybox initramfs, run a
# command as root on a payload of static binaries inside the VM, stream the
# VM's serial console to stdout, power off, and exit with the command's status.
#
# Used by `make test-kernels` to run compiled Go integration tests (eBPF:
# fentry, kprobes, tracepoints, uprobes, ring buffers) on a kernel that has the
# hooks the build machine's own kernel lacks. See scripts/kernels/README.md.
set -euo pipefail

prog=${0##*/}
usage() {
	cat <<'EOF'
usage: scripts/kernels/run.sh [--kernel NAME | --kernel-image PATH]
                              [--mem 2G] [--timeout SECONDS]
                              PAYLOAD_DIR -- CMD [ARGS...]

Boots the kernel under qemu (TCG) with a busybox initramfs, copies PAYLOAD_DIR
to /payload inside the VM, runs CMD ARGS there as root (cwd /payload, /payload
on PATH), streams the serial console to stdout and exits with CMD's status.

  --kernel NAME        kernel to fetch and cache: debian-5.10 (Debian 11),
                       debian-6.1 (Debian 12, the default), debian-6.12 (Debian 13),
                       debian-6.1-arm64 (Debian 12's arm64 kernel, under
                       qemu-system-aarch64; the payload must be arm64)
  --kernel-image PATH  boot this bzImage/vmlinuz instead (nothing is fetched)
  --mem SIZE           guest memory, qemu syntax (default 2G)
  --timeout SECONDS    kill qemu after this long and exit 124 (default 600)

Exit status: CMD's status; 124 on timeout; 125 if the harness or the VM failed.
EOF
}
# One-line errors naming the problem and what to do; 125 = harness failure.
die() {
	echo "$prog: $*" >&2
	exit 125
}
log() { echo "$prog: $*" >&2; }

# ---------------------------------------------------------------- arguments
kernel=debian-6.1
kernel_image=
mem=2G
timeout_s=600
while (($#)); do
	case $1 in
	--kernel) kernel=${2:?"$prog: --kernel needs a name"}; shift 2 ;;
	--kernel=*) kernel=${1#*=}; shift ;;
	--kernel-image) kernel_image=${2:?"$prog: --kernel-image needs a path"}; shift 2 ;;
	--kernel-image=*) kernel_image=${1#*=}; shift ;;
	--mem) mem=${2:?"$prog: --mem needs a size"}; shift 2 ;;
	--mem=*) mem=${1#*=}; shift ;;
	--timeout) timeout_s=${2:?"$prog: --timeout needs seconds"}; shift 2 ;;
	--timeout=*) timeout_s=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	--) die "PAYLOAD_DIR is missing before --; usage: $prog [options] PAYLOAD_DIR -- CMD [ARGS...]" ;;
	-*) die "unknown option $1; run $prog --help" ;;
	*) break ;;
	esac
done
if (($# < 3)) || [[ $2 != -- ]]; then
	die "expected PAYLOAD_DIR -- CMD [ARGS...]; run $prog --help"
fi
payload=$1
shift 2
cmd=("$@")
[[ -d $payload ]] || die "payload dir $payload does not exist; pass a directory of static binaries"
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, got '$timeout_s'"
[[ $mem =~ ^[0-9]+[MG]?$ ]] || die "--mem must look like 2G or 1536M, got '$mem'"
if [[ -n $kernel_image ]]; then
	[[ -r $kernel_image ]] || die "kernel image $kernel_image is not readable; pass a bzImage/vmlinuz path"
else
	case $kernel in
	debian-5.10 | debian-6.1 | debian-6.12 | debian-6.1-arm64) ;;
	*) die "unknown kernel '$kernel'; known: debian-5.10, debian-6.1, debian-6.12, debian-6.1-arm64 (or pass --kernel-image PATH)" ;;
	esac
fi
((EUID == 0)) || die "must run as root (it installs packages with apt-get); rerun with sudo"
# The guest's architecture: an -arm64 kernel boots under qemu-system-aarch64.
arch=amd64
[[ $kernel == *-arm64 ]] && arch=arm64

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=$repo/.cache/kernels
mkdir -p "$cache"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gonetscope-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------- host packages
export DEBIAN_FRONTEND=noninteractive
apt_updated=
apt_update() {
	[[ -n $apt_updated ]] && return
	log "apt-get update"
	apt-get update -q >&2 || die "apt-get update failed; check the apt sources in /etc/apt"
	apt_updated=1
}
# Install packages, running apt-get update once if they are not found. apt's
# chatter goes to stderr: stdout is reserved for the VM's console.
apt_install() {
	log "installing $*"
	apt-get install -y -q --no-install-recommends "$@" >&2 && return
	apt_update
	apt-get install -y -q --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed; install it by hand and rerun"
}
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[[ $arch == arm64 ]] && { command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm); }
command -v cpio >/dev/null || need+=(cpio)
command -v gzip >/dev/null || need+=(gzip)
command -v xz >/dev/null || need+=(xz-utils)
# The dynamic `busybox` package also provides /bin/busybox; we need the static
# one because the initramfs has no libc.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
((${#need[@]} == 0)) || apt_install "${need[@]}"

# ------------------------------------------------------------------- kernel
# Debian's packaged kernels: BTF, kprobes, ftrace/fentry, all built in. We
# fetch the newest image package of the series with `apt-get download` (never
# installed), keep only vmlinuz (and a decompressed vmlinux) and its config,
# and reuse them on later runs. To move to a newer package, delete
# $cache/NAME.
#
# Kernels of other Debian releases than the host's come from their suites
# through a private apt configuration under $cache/apt; the host's apt
# sources are not touched.
#   NAME         suites                         package
#   debian-5.10  bullseye, bullseye-security    linux-image-5.10.0-NN-amd64
#   debian-6.1   the host's (bookworm)          linux-image-6.1.0-NN-amd64
#   debian-6.12  trixie, trixie-security        linux-image-6.12.NN+deb13-amd64
#   debian-6.1-arm64  bookworm (arm64 lists)    linux-image-6.1.0-NN-arm64
kernel_pattern() {
	case $1 in
	debian-5.10) echo '^linux-image-5\.10\.0-[0-9]+-amd64(-unsigned)?$' ;;
	debian-6.1) echo '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' ;;
	debian-6.12) echo '^linux-image-6\.12\.[0-9]+\+deb13-amd64(-unsigned)?$' ;;
	debian-6.1-arm64) echo '^linux-image-6\.1\.0-[0-9]+-arm64(-unsigned)?$' ;;
	esac
}
kernel_suite() {
	case $1 in
	debian-5.10) echo bullseye ;;
	debian-6.12) echo trixie ;;
	debian-6.1-arm64) echo bookworm ;;
	esac
}
apt_opts=()
# Points apt_opts at a private configuration with the suites of kernel $1
# (nothing when the host's sources have it), and updates its lists when
# they are empty or when $2 is "update".
use_suites() {
	local suite
	suite=$(kernel_suite "$1")
	[[ -z $suite ]] && return
	local dir=$cache/apt
	local lists=$dir/lists-$suite-$arch
	mkdir -p "$lists/partial"
	{
		echo "deb [arch=$arch] http://deb.debian.org/debian $suite main"
		echo "deb [arch=$arch] http://deb.debian.org/debian-security $suite-security main"
	} >"$dir/sources-$suite-$arch.list"
	apt_opts=(-o "Dir::Etc::SourceList=$dir/sources-$suite-$arch.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$lists" -o APT::Sandbox::User=root
		-o "APT::Architecture=$arch" -o "APT::Architectures::=$arch")
	if [[ ${2:-} == update || ! -e $lists/.updated ]]; then
		log "apt-get update of Debian $suite (private lists in $dir)"
		apt-get "${apt_opts[@]}" update -q >&2 ||
			die "apt-get update of Debian $suite failed; check network access to the Debian mirror"
		touch "$lists/.updated"
	fi
}
debian_pkgs() {
	apt-cache "${apt_opts[@]}" search --names-only "$(kernel_pattern "$1")" | awk '{print $1}'
}
fetch_debian() {
	local name=$1 dir=$cache/$1
	[[ -f $dir/vmlinuz ]] && return
	use_suites "$name"
	local pkg
	if [[ -z $(debian_pkgs "$name") ]]; then
		if ((${#apt_opts[@]})); then use_suites "$name" update; else apt_update; fi
	fi
	# The newest ABI number; prefer the signed package, fall back to -unsigned.
	pkg=$(debian_pkgs "$name" | sed 's/-unsigned$//' | sort -uV | tail -n1)
	[[ -n $pkg ]] || die "apt knows no package matching $(kernel_pattern "$name"); check the Debian apt sources for $name"
	local dl=$tmp/deb
	mkdir -p "$dl"
	download() {
		local p
		for p in "$pkg" "$pkg-unsigned"; do
			# Sandbox user root: the _apt user cannot write into our temp dir.
			(cd "$dl" && apt-get "${apt_opts[@]}" download -q -o APT::Sandbox::User=root "$p" >&2) && return 0
		done
		return 1
	}
	log "downloading $pkg (about 70 MB, once; cached in $dir)"
	download || {
		if ((${#apt_opts[@]})); then use_suites "$name" update; else apt_update; fi
		download
	} || die "apt-get download $pkg failed; check network access to the Debian mirror"
	# Unpack only /boot: the rest is 400 MB of modules the VM does not load.
	mkdir -p "$dl/root"
	dpkg-deb --fsys-tarfile "$dl"/*.deb | tar -x -C "$dl/root" --wildcards './boot/*'
	local out
	out=$(mktemp -d "$cache/.$name.XXXXXX")
	cp "$dl"/root/boot/vmlinuz-* "$out/vmlinuz"
	cp "$dl"/root/boot/config-* "$out/config"
	# qemu can boot an ELF vmlinux only through a PVH entry point (x86).
	# (Debian's arm64 vmlinuz is an uncompressed Image already.)
	if grep -q '^CONFIG_PVH=y' "$out/config"; then
		extract_vmlinux "$out/vmlinuz" "$out/vmlinux" ||
			log "warning: could not decompress vmlinuz; booting the compressed image (about 3 s slower)"
	fi
	dpkg-deb -f "$dl"/*.deb Package Version >"$out/VERSION"
	chmod 755 "$out"
	# Atomic publish; if a concurrent run won the race, keep theirs.
	mv -T "$out" "$dir" 2>/dev/null || rm -rf "$out"
}
# Decompressing the kernel inside the VM takes about 3 s under TCG, longer
# than the rest of the boot. Debian's kernel is xz-compressed and built with
# CONFIG_PVH, so we decompress it once on the host and let qemu boot the ELF
# vmlinux directly through its PVH entry point.
extract_vmlinux() {
	local in=$1 out=$2 off
	# Try each xz stream header in the bzImage until one yields an ELF file.
	for off in $(LC_ALL=C grep -abo $'\xfd7zXZ' "$in" | cut -d: -f1 | head -n3); do
		# (xz stops reading after the stream; a pipe would fail on SIGPIPE.)
		xz -dc --single-stream <(tail -c +$((off + 1)) "$in") >"$out.tmp" 2>/dev/null || continue
		if [[ $(head -c4 "$out.tmp") == $'\x7fELF' ]]; then
			mv -f "$out.tmp" "$out"
			return 0
		fi
	done
	rm -f "$out.tmp"
	return 1
}
if [[ -n $kernel_image ]]; then
	kimage=$kernel_image
else
	fetch_debian "$kernel"
	kimage=$cache/$kernel/vmlinux
	[[ -f $kimage ]] || kimage=$cache/$kernel/vmlinuz
	log "kernel: $(tr '\n' ' ' <"$cache/$kernel/VERSION")"
fi

# ---------------------------------------------------------------- initramfs
# The guest's /init (PID 1). Kept in this file so the cached base archive is
# rebuilt whenever it changes (its hash is part of the cache file name).
read -r -d '' init_script <<'INIT' || true
#!/bin/sh
# PID 1 inside the gonetscope test VM, generated by scripts/kernels/run.sh.
export PATH=/payload:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
try() { "$@" || echo "init: '$*' failed" >&2; }
try mount -t proc proc /proc
try mount -t sysfs sysfs /sys
try mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
try mount -t devpts devpts /dev/pts
try mount -t tmpfs tmpfs /dev/shm
try mount -t tmpfs tmpfs /tmp
try mount -t tracefs tracefs /sys/kernel/tracing
try mount -t debugfs debugfs /sys/kernel/debug
try mount -t bpf bpf /sys/fs/bpf
try mount -t cgroup2 cgroup2 /sys/fs/cgroup
try ip link set lo up
hostname gonetscope-vm
# The serial console would turn \n into \r\n; keep the command's bytes as-is.
stty -onlcr 2>/dev/null
cd /payload
sh /gonetscope/cmd </dev/null
rc=$?
echo "GONETSCOPE-VM-EXIT=$rc"
poweroff -f
# Not reached unless poweroff failed: init exiting panics the kernel, and with
# panic=-1 and qemu's -no-reboot that ends qemu as well.
INIT

# The guest's busybox: the host's for amd64; for arm64, Debian's arm64
# busybox-static, downloaded through the kernel's private apt configuration.
busybox=/bin/busybox
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static)
if [[ $arch == arm64 ]]; then
	busybox=$cache/busybox-arm64/bin/busybox
	if [[ ! -x $busybox ]]; then
		use_suites "$kernel"
		mkdir -p "$tmp/bb"
		(cd "$tmp/bb" && apt-get "${apt_opts[@]}" download -q busybox-static >&2) ||
			die "apt-get download of the arm64 busybox-static failed; check network access to the Debian mirror"
		rm -rf "$cache/busybox-arm64" && dpkg-deb -x "$tmp"/bb/busybox-static_*.deb "$cache/busybox-arm64"
	fi
	busybox_version=arm64-$(sha256sum "$busybox" | cut -c1-12)
fi
base_key=$({ echo "$busybox_version"; echo "$init_script"; } | sha256sum | cut -c1-12)
base=$cache/initramfs-base-$base_key.cpio.gz

# Busybox with one symlink per applet, device nodes for the console, minimal
# /etc, and /init. Gzipped and padded to 512 bytes so that an uncompressed
# archive appended to it starts 4-byte aligned, as the kernel requires.
build_base() {
	local root=$tmp/base
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,payload,gonetscope}
	cp "$busybox" "$root/bin/busybox"
	local applet
	# (The host's busybox lists the applets: the arm64 one cannot run here.)
	for applet in $(/bin/busybox --list-full); do
		[[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
	done
	mknod -m 600 "$root/dev/console" c 5 1
	mknod -m 666 "$root/dev/null" c 1 3
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
	printf '%s\n' "$init_script" >"$root/init"
	chmod 755 "$root/init"
	local out
	out=$(mktemp "$cache/.base.XXXXXX")
	(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -6) >"$out"
	truncate -s %512 "$out"
	chmod 644 "$out"
	mv -f "$out" "$base"
}
[[ -f $base ]] || build_base

# Static binaries only: the VM has no libc. A dynamic ELF names its loader in
# the first page; warn early rather than let it fail with "not found" inside.
while IFS= read -r -d '' f; do
	# (Not `head | grep -q`: with pipefail, head's SIGPIPE could hide a match.)
	if grep -aq '/lib64/ld-linux\|/lib/ld-linux-aarch64' <(head -c 4096 "$f"); then
		log "warning: $f is dynamically linked and will not run in the VM; build it with CGO_ENABLED=0"
	fi
done < <(find "$payload" -type f -perm -u+x -print0)

# The payload part: /payload plus /gonetscope/cmd, the command as a shell
# script. Each argument is single-quoted so any bytes survive (the kernel
# command line would mangle quoting). Left uncompressed: gunzip under TCG is
# slower than loading the bytes.
proot=$tmp/payload
mkdir -p "$proot/payload" "$proot/gonetscope"
cp -a "$payload/." "$proot/payload/"
quote() { local q="'\\''"; printf "'%s'" "${1//\'/$q}"; }
{
	echo '#!/bin/sh'
	printf 'exec'
	for a in "${cmd[@]}"; do printf ' %s' "$(quote "$a")"; done
	echo
} >"$proot/gonetscope/cmd"
initrd=$tmp/initrd
cp "$base" "$initrd"
(cd "$proot" && find . | cpio -o -H newc -R 0:0 --quiet) >>"$initrd"

# --------------------------------------------------------------------- boot
# -cpu max: every feature TCG emulates (SSE2 and up, RDRAND for the kernel's
# random pool). -nic none: no NIC, so no iPXE option ROM to load. qboot, when
# qemu ships it, is a faster firmware than SeaBIOS and prints nothing (SeaBIOS
# clears the screen with escape codes). stdin is /dev/null so qemu never
# touches the terminal. panic=-1 with -no-reboot makes qemu exit if the kernel
# panics.
append="console=ttyS0 quiet loglevel=${GONETSCOPE_VM_LOGLEVEL:-3} panic=-1 rdinit=/init"
# One vCPU: with two, TCG sometimes livelocked both in the kernel's int3
# text patching (syscall_trace_enter, while BPF programs attached): soft
# lockups that never ended. VM_SMP=2 brings the second back.
qemu=(qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "${VM_SMP:-1}" -nographic
	-no-reboot -nic none -kernel "$kimage" -initrd "$initrd" -append "$append")
qboot=/usr/share/qemu/qboot.rom
[[ -f $qboot ]] && qemu+=(-bios "$qboot")
# arm64: qemu's virt board, its PL011 UART as the console. cortex-a72 rather
# than max: emulating SVE and pointer authentication slows TCG for nothing.
if [[ $arch == arm64 ]]; then
	qemu=(qemu-system-aarch64 -M virt -accel tcg -cpu cortex-a72 -m "$mem" -smp "${VM_SMP:-1}" -nographic
		-no-reboot -nic none -kernel "$kimage" -initrd "$initrd" -append "${append/ttyS0/ttyAMA0}")
fi

console=$tmp/console.log
# qemu runs in a background pipeline so that a signal to this script (Ctrl-C,
# or a CI or make killing it) can stop qemu instead of leaving it running
# until the timeout. Signals go to `timeout`, which passes them on to qemu.
{
	timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" </dev/null &
	echo $! >"$tmp/qemu.pid"
	rc=0
	wait $! || rc=$?
	echo "$rc" >"$tmp/qemu.rc"
} | sed -u 's/\r$//' | tee "$console" &
# shellcheck disable=SC2317 # called by the trap below
stop_vm() {
	kill -TERM "$(cat "$tmp/qemu.pid" 2>/dev/null)" 2>/dev/null || true
	wait || true
	log "interrupted; stopped qemu"
	exit 130
}
trap stop_vm INT TERM HUP
wait $! || true
trap - INT TERM HUP
qemu_rc=$(cat "$tmp/qemu.rc" 2>/dev/null || echo "?")

if [[ $qemu_rc == 124 || $qemu_rc == 137 ]]; then
	log "timed out after ${timeout_s}s; killed qemu (raise --timeout if the command needs longer)"
	exit 124
fi
marker=$(grep -ao 'GONETSCOPE-VM-EXIT=[0-9]*' "$console" | tail -n1 || true)
[[ -n $marker ]] ||
	die "the VM did not report a status (qemu exited $qemu_rc); see the console output above for a panic or boot error"
exit "${marker#*=}"
