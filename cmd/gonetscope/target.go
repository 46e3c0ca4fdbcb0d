package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// openTarget resolves pid to a Go program and opens its memory, with the
// one-line refusals trace gives (no such process, not a Go program).
func openTarget(pid int) (proc.Process, *goruntime.Process, error) {
	p, bin, err := goruntime.InspectPID(pid)
	if err != nil {
		return p, nil, err
	}
	rt, err := goruntime.OpenProcess(pid, bin)
	if err != nil {
		return p, nil, fmt.Errorf("PID %d (%s): %w", pid, p.Comm, err)
	}
	return p, rt, nil
}

// watchFor waits d, or until SIGINT or SIGTERM, and says whether p was
// still alive then (checked every 100 ms: it returns early if not).
func watchFor(d time.Duration, p proc.Process) bool {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case <-tick.C:
			if !p.Alive() {
				return false
			}
		}
	}
}
