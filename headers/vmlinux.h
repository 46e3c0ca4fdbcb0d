/* Kernel types for CO-RE, written by `make vmlinux` with bpftool from a
 * kernel's BTF (/sys/kernel/btf/vmlinux) and committed as an input. One
 * file per architecture; bpf2go's -target sets __TARGET_ARCH_*. */
#if defined(__TARGET_ARCH_x86)
#include "vmlinux-x86.h"
#elif defined(__TARGET_ARCH_arm64)
#include "vmlinux-arm64.h"
#else
#error "no vmlinux header for this architecture: run make vmlinux on such a host"
#endif
