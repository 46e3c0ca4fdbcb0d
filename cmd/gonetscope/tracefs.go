package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// privateTracefsEnv marks the process that privateTracefs re-executed.
const privateTracefsEnv = "GONETSCOPE_PRIVATE_TRACEFS"

// tracefsDirs are where the kernel's tracing events are looked for, in
// order (cilium/ebpf looks in the same two places).
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

func tracefsMounted() bool {
	for _, dir := range tracefsDirs {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return true
		}
	}
	return false
}

// privateTracefs makes tracefs visible to gonetscope alone when the host
// has not mounted it: the classic tracepoints are found by their ids in
// it. It moves the calling thread into a mount namespace of its own,
// mounts tracefs there, and executes gonetscope again from that thread
// with the same arguments, so that the whole process runs in that
// namespace: the host's mounts are left as they were, and the mount goes
// away with the process. It returns only on failure.
func privateTracefs() error {
	if os.Getenv(privateTracefsEnv) != "" {
		return errors.New("tracefs is still not there after mounting it in a mount namespace of gonetscope's own")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The namespace is the thread's until the exec makes it the process's;
	// if that fails, the thread stays locked and gonetscope ends.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("a mount namespace of its own: %w", err)
	}
	// Nothing mounted here propagates to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making its mounts private: %w", err)
	}
	if err := unix.Mount("nodev", tracefsDirs[0], "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mounting tracefs at %s: %w", tracefsDirs[0], err)
	}
	return unix.Exec(exe, os.Args, append(os.Environ(), privateTracefsEnv+"=1"))
}
