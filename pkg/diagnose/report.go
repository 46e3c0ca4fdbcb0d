// Package diagnose is the Go network-performance checklist of `gonetscope
// diagnose` and `gonetscope report`: a pure function from a recorded
// event stream (and thresholds) to a report of items, each ok, warn,
// problem or n/a with its measured value, threshold and evidence, and the
// top findings in plain words. It rendered as text (readable at 100
// columns) and as JSON, whose schema docs/diagnose.md documents.
package diagnose

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Version is the JSON report's schema version (docs/diagnose.md).
const Version = 1

// Item verdicts.
const (
	OK      = "ok"
	Warn    = "warn"
	Problem = "problem"
	NA      = "n/a"
)

// Exit statuses of diagnose and report.
const (
	ExitOK       = 0 // nothing above warn
	ExitProblems = 1 // at least one problem
	ExitFailed   = 2 // could not diagnose
)

// Report is the checklist for one process.
type Report struct {
	Version  int       `json:"version"`
	Target   Target    `json:"target"`
	Window   Window    `json:"window"`
	Items    []Item    `json:"items"`
	Findings []string  `json:"findings"`
	Counts   StatusSum `json:"counts"`
	// ExitStatus is what diagnose and report exit with: 0 nothing above
	// warn, 1 problems found.
	ExitStatus int        `json:"exit_status"`
	Thresholds Thresholds `json:"thresholds"`
}

// Target is the diagnosed process, from its attached event.
type Target struct {
	PID       uint32            `json:"pid"`
	Comm      string            `json:"comm"`
	Exe       string            `json:"exe"`
	GoVersion string            `json:"go_version"`
	Hooks     map[string]string `json:"hooks"`
	Limits    []string          `json:"limits,omitempty"`
	// Detached is the detached event's reason ("" if the stream has none).
	Detached string `json:"detached,omitempty"`
}

// Window is the time the stream covers for the target.
type Window struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	DurationNs int64     `json:"duration_ns"`
}

// StatusSum counts the items by verdict.
type StatusSum struct {
	OK      int `json:"ok"`
	Warn    int `json:"warn"`
	Problem int `json:"problem"`
	NA      int `json:"n/a"`
}

// Item is one line of the checklist.
type Item struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status string `json:"status"`
	// Value is what was measured, in words ("p99 151ms on 127.0.0.1:4000");
	// Threshold what it was held against. Why says why an n/a item could
	// not be measured.
	Value     string `json:"value,omitempty"`
	Threshold string `json:"threshold,omitempty"`
	Why       string `json:"why,omitempty"`
	// Measured and Limit are the numbers behind Value and Threshold, in
	// Unit ("ns", "count", "ratio", "cpus"), when there is one number.
	Measured *float64   `json:"measured,omitempty"`
	Limit    *float64   `json:"limit,omitempty"`
	Unit     string     `json:"unit,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
	// Finding says a non-ok item's meaning in plain words.
	Finding string `json:"finding,omitempty"`
	// score ranks findings: how far over its threshold the item is.
	score float64
}

// Evidence is one fact under a non-ok item: Text in words, and the
// numbers a program (or a test) checks.
type Evidence struct {
	Text      string   `json:"text"`
	Goids     []uint64 `json:"goids,omitempty"`
	FDs       []int32  `json:"fds,omitempty"`
	Laddr     string   `json:"laddr,omitempty"`
	Lport     uint16   `json:"lport,omitempty"`
	Raddr     string   `json:"raddr,omitempty"`
	Rport     uint16   `json:"rport,omitempty"`
	Site      string   `json:"site,omitempty"`
	CreatedAt string   `json:"created_at,omitempty"`
	Count     uint64   `json:"count,omitempty"`
	ValueNs   uint64   `json:"value_ns,omitempty"`
	// Bytes is an amount of memory, such as a site's growth in use.
	Bytes int64 `json:"bytes,omitempty"`
	// Stack is the most telling frames, "func file:line", innermost first.
	Stack []string `json:"stack,omitempty"`
}

// ErrNoTarget: the stream has no attached event for the process.
var ErrNoTarget = errors.New("no attached event for the process in the stream")

// PIDs lists the processes the stream has attached events for.
func PIDs(evs []Event) []uint32 {
	seen := map[uint32]bool{}
	for _, e := range evs {
		if e.Event == "attached" {
			seen[e.PID] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Analyze runs the checklist over the events of process pid (and the
// stream-wide lost events). It is a pure function of its arguments.
func Analyze(evs []Event, pid uint32, th Thresholds) (*Report, error) {
	r := &Report{Version: Version, Thresholds: th, Findings: []string{}}
	var mine []Event
	attached := false
	for _, e := range evs {
		if e.PID != pid && !(e.Event == "lost" && e.PID == 0) {
			continue
		}
		mine = append(mine, e)
		switch e.Event {
		case "attached":
			if !attached {
				r.Target = Target{PID: e.PID, Comm: e.Comm, Exe: e.Exe, GoVersion: e.GoVersion, Hooks: e.Hooks}
				attached = true
			}
			r.Target.Limits = append(r.Target.Limits, e.Limits...)
		case "detached":
			r.Target.Detached = e.Reason
		}
		if e.PID == pid {
			if r.Window.Start.IsZero() || e.Time.Before(r.Window.Start) {
				r.Window.Start = e.Time
			}
			if e.Time.After(r.Window.End) {
				r.Window.End = e.Time
			}
		}
	}
	if !attached {
		return nil, fmt.Errorf("PID %d: %w", pid, ErrNoTarget)
	}
	r.Window.DurationNs = r.Window.End.Sub(r.Window.Start).Nanoseconds()
	s := &stream{evs: mine, th: th, target: r.Target}
	for _, check := range checks {
		it := check(s)
		r.Items = append(r.Items, it)
	}
	for _, it := range r.Items {
		switch it.Status {
		case OK:
			r.Counts.OK++
		case Warn:
			r.Counts.Warn++
		case Problem:
			r.Counts.Problem++
			r.ExitStatus = ExitProblems
		case NA:
			r.Counts.NA++
		}
	}
	ranked := slices.DeleteFunc(slices.Clone(r.Items), func(it Item) bool { return it.Finding == "" })
	slices.SortStableFunc(ranked, func(a, b Item) int {
		if a.Status != b.Status {
			if a.Status == Problem {
				return -1
			}
			if b.Status == Problem {
				return 1
			}
		}
		return cmp.Compare(b.score, a.score)
	})
	for _, it := range ranked[:min(3, len(ranked))] {
		r.Findings = append(r.Findings, it.Finding)
	}
	return r, nil
}

// stream is one target's events and the thresholds, as the checks see them.
type stream struct {
	evs    []Event
	th     Thresholds
	target Target
}

func (s *stream) of(kind string) []Event {
	var out []Event
	for _, e := range s.evs {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

// checks are the items, in the order the report lists them.
var checks = []func(*stream) Item{
	acceptQueue,
	slowPeer,
	schedDelay,
	handshake,
	connectFailures,
	goroutineLeak,
	fdUsage,
	tcpStates,
	gomaxprocs,
	lostEvents,
	gcPauses,
	heapGrowth,
	lockContention,
	readDeadlines,
	httpRequests,
	cpuHotspots,
}

func f64(v float64) *float64 { return &v }
