package main

// gonetscope gc: the garbage collector's own records, read once from the
// target's memory (goruntime.Process.GCStats), no probe.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"time"
)

const gcUsage = "gonetscope gc --pid PID [--json] [--pauses N]"

// gcJSON is gc --json; README "GC".
type gcJSON struct {
	NumGC        uint32    `json:"num_gc"`
	NumForcedGC  uint32    `json:"num_forced_gc"`
	PauseTotalNs uint64    `json:"pause_total_ns"`
	Pauses       []gcPause `json:"pauses"`
	LastGCUnixNs uint64    `json:"last_gc_unix_ns,omitempty"`
	GOGC         int32     `json:"gogc"`
	MemoryLimit  int64     `json:"memory_limit"`
	HeapLive     uint64    `json:"heap_live"`
	HeapMarked   uint64    `json:"heap_marked"`
	HeapGoal     uint64    `json:"heap_goal"`
	LastHeapGoal uint64    `json:"last_heap_goal"`
	HeapMinimum  uint64    `json:"heap_minimum"`
}

type gcPause struct {
	Ns        uint64 `json:"ns"`
	EndUnixNs uint64 `json:"end_unix_ns"`
}

func gcCmd(args []string) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	var (
		pid    = fs.Int("pid", 0, "PID of the Go program")
		asJSON = fs.Bool("json", false, "one JSON object instead of text")
		pauses = fs.Int("pauses", 10, "how many of the last pauses to show (the runtime keeps 256)")
	)
	if err := parseFlags(fs, args, gcUsage); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: %s", fs.Arg(0), gcUsage)
	case *pid <= 0:
		return errors.New("no target: give the PID of a Go program with --pid")
	case *pauses < 0:
		return fmt.Errorf("--pauses %d: give 0 to 256", *pauses)
	}
	pr, p, err := openTarget(*pid)
	if err != nil {
		return err
	}
	s, err := p.GCStats()
	if err != nil {
		return fmt.Errorf("PID %d (%s): reading the GC's records: %w", *pid, pr.Comm, err)
	}
	j := gcJSON{NumGC: s.NumGC, NumForcedGC: s.NumForcedGC, PauseTotalNs: s.PauseTotalNs, Pauses: []gcPause{},
		LastGCUnixNs: s.LastGCUnixNs, GOGC: s.GOGC, MemoryLimit: s.MemoryLimit, HeapLive: s.HeapLive,
		HeapMarked: s.HeapMarked, HeapGoal: s.HeapGoal, LastHeapGoal: s.LastHeapGoal, HeapMinimum: s.HeapMinimum}
	for _, ps := range s.Pauses[:min(*pauses, len(s.Pauses))] {
		j.Pauses = append(j.Pauses, gcPause{Ns: ps.Ns, EndUnixNs: ps.EndUnixNs})
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(j)
	}
	fmt.Printf("PID %d (%s), %s\n", *pid, pr.Comm, p.Bin.GoVersion)
	fmt.Printf("GC cycles      %d (%d forced)\n", s.NumGC, s.NumForcedGC)
	fmt.Printf("pause total    %s\n", time.Duration(s.PauseTotalNs))
	if s.LastGCUnixNs != 0 {
		fmt.Printf("last GC        %s (%s ago)\n", time.Unix(0, int64(s.LastGCUnixNs)).UTC().Format(time.RFC3339Nano),
			time.Since(time.Unix(0, int64(s.LastGCUnixNs))).Round(time.Millisecond))
	}
	gogc := fmt.Sprint(s.GOGC)
	if s.GOGC < 0 {
		gogc = "off"
	}
	limit := fmt.Sprintf("%d bytes", s.MemoryLimit)
	if s.MemoryLimit == math.MaxInt64 {
		limit = "none"
	}
	fmt.Printf("GOGC           %s\nmemory limit   %s\n", gogc, limit)
	fmt.Printf("heap live      %d bytes (marked by the last GC: %d)\n", s.HeapLive, s.HeapMarked)
	fmt.Printf("heap goal      %d bytes (GOGC's; last cycle's: %d)\n", s.HeapGoal, s.LastHeapGoal)
	if len(j.Pauses) > 0 {
		fmt.Printf("last pauses   ")
		for _, ps := range j.Pauses {
			fmt.Printf(" %s", time.Duration(ps.Ns))
		}
		fmt.Println()
	}
	return nil
}
