package main

import (
	"golang.org/x/sys/unix"
)

// Capabilities gonetscope uses: loading BPF programs and maps (CAP_BPF),
// tracing programs and reading kernel memory (CAP_PERFMON), reading another
// process's memory and /proc/PID/exe (CAP_SYS_PTRACE), and, on kernels that
// charge BPF maps to RLIMIT_MEMLOCK, raising it (CAP_SYS_RESOURCE).
var neededCaps = []struct {
	bit  int
	name string
}{
	{unix.CAP_BPF, "CAP_BPF"},
	{unix.CAP_PERFMON, "CAP_PERFMON"},
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
}

// missingCaps returns the needed capabilities absent from the effective set.
func missingCaps() []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return []string{"(capget failed: " + err.Error() + ")"}
	}
	var missing []string
	for _, c := range neededCaps {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON on
			// kernels before 5.8.
			if c.bit != unix.CAP_SYS_PTRACE && data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0 {
				continue
			}
			missing = append(missing, c.name)
		}
	}
	return missing
}
