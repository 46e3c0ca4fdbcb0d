#!/usr/bin/env bash
# Writes headers/vmlinux-arm64.h: the C types of Debian 12's arm64 kernel,
# for compiling the BPF programs for arm64 (CO-RE relocates them to the
# running kernel). No arm64 machine is needed: Debian's arm64 vmlinuz is an
# uncompressed Image, and the kernel's BTF (.BTF, the bytes behind
# /sys/kernel/btf/vmlinux) lies in it whole; this carves it out by its
# header and lets bpftool print it as C.
#
#   scripts/kernels/btf-arm64.sh [OUT]      (default headers/vmlinux-arm64.h)
set -euo pipefail
prog=${0##*/}
die() {
	echo "$prog: $*" >&2
	exit 1
}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$repo/headers/vmlinux-arm64.h}
command -v bpftool >/dev/null || die "bpftool is missing: apt-get install bpftool"

# run.sh fetches and caches the kernel (and can boot it: `true` is cheap).
payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
"$repo/scripts/kernels/run.sh" --kernel debian-6.1-arm64 "$payload" -- true >/dev/null
img=$repo/.cache/kernels/debian-6.1-arm64/vmlinuz

# struct btf_header: u16 magic 0xeb9f, u8 version 1, u8 flags, u32 hdr_len
# (24), u32 type_off, type_len, str_off, str_len. The kernel's own BTF is the
# large one.
best= best_len=0
while IFS=: read -r off _; do
	read -r type_off type_len str_off str_len < <(od -An -tu4 -j $((off + 8)) -N16 "$img")
	end=$((type_off + type_len > str_off + str_len ? type_off + type_len : str_off + str_len))
	if ((type_len > best_len)); then
		best=$off best_len=$type_len size=$((24 + end))
	fi
done < <(LC_ALL=C grep -obUaP '\x9f\xeb\x01\x00\x18\x00\x00\x00' "$img")
[[ -n $best ]] || die "no BTF in $img: is the kernel built with CONFIG_DEBUG_INFO_BTF=y?"
btf=$payload/vmlinux.btf
dd if="$img" of="$btf" bs=1M iflag=skip_bytes,count_bytes skip="$best" count="$size" status=none
bpftool btf dump file "$btf" format c >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "$prog: wrote $out from $(tr '\n' ' ' <"$repo/.cache/kernels/debian-6.1-arm64/VERSION")" >&2
