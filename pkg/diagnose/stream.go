package diagnose

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Event is one line of gonetscope's event stream, any type: the fields
// the analysis reads, named as in the README's event reference (and
// docs/diagnose.md for the process event). Fields of other types stay zero.
type Event struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	PID   uint32    `json:"pid"`
	Comm  string    `json:"comm"`
	Goid  *uint64   `json:"goid"`
	Stack []Frame   `json:"stack"`

	// attached, detached
	Exe       string            `json:"exe"`
	GoVersion string            `json:"go_version"`
	Hooks     map[string]string `json:"hooks"`
	MinWaitNs uint64            `json:"min_wait_ns"`
	Limits    []string          `json:"limits"`
	Reason    string            `json:"reason"`

	// sockets: netpoll_wait, tcp_connect, tcp_accept, listen_overflow, accept_error
	FD       int32  `json:"fd"`
	ListenFD int32  `json:"listen_fd"`
	Laddr    string `json:"laddr"`
	Lport    uint16 `json:"lport"`
	Raddr    string `json:"raddr"`
	Rport    uint16 `json:"rport"`

	// netpoll_wait
	Mode         string `json:"mode"`
	Kind         string `json:"kind"`
	WaitNs       uint64 `json:"wait_ns"`
	IoWaitNs     uint64 `json:"io_wait_ns"`
	SchedDelayNs uint64 `json:"sched_delay_ns"`

	// tcp_connect
	HandshakeNs uint64 `json:"handshake_ns"`
	Result      string `json:"result"`

	// listen_overflow
	Overflows  uint64     `json:"overflows"`
	Drops      uint64     `json:"drops"`
	Backlog    uint32     `json:"backlog"`
	BacklogMax uint32     `json:"backlog_max"`
	Verdict    string     `json:"verdict"`
	Acceptors  []Acceptor `json:"acceptors"`

	// accept_error
	Errno string `json:"errno"`

	// lost
	Count     uint64 `json:"count"`
	Stream    string `json:"stream"`
	LostEvent string `json:"lost_event"`

	// summary
	IntervalNs uint64               `json:"interval_ns"`
	Waits      map[string]WaitStats `json:"waits"`
	Suppressed map[string]uint64    `json:"suppressed"`
	// BelowThreshold: connects and accepts counted, not written: fast
	// and successful (trace --connections notable, the default).
	BelowThreshold map[string]uint64 `json:"below_threshold"`

	// goroutines, goroutine_leak (and heap_profile's sites)
	Live        int64           `json:"live"`
	Sites       []GoroutineSite `json:"sites"`
	Site        string          `json:"site"`
	CreatedAt   string          `json:"created_at"`
	CreatedBy   string          `json:"created_by"`
	Created     uint64          `json:"created"`
	Growth      []int64         `json:"growth"`
	OldestGoids []uint64        `json:"oldest_goids"`
	ParkedOn    []string        `json:"parked_on"`
	OldestAgeNs uint64          `json:"oldest_age_ns"`

	// gc
	NumGC        uint32   `json:"num_gc"`
	PauseTotalNs uint64   `json:"pause_total_ns"`
	Cycles       uint32   `json:"cycles"`
	PausesNs     []uint64 `json:"pauses_ns"`
	PausesMissed uint32   `json:"pauses_missed"`
	HeapAfter    *uint64  `json:"heap_after"`
	HeapLive     uint64   `json:"heap_live"`
	HeapGoal     uint64   `json:"heap_goal"`
	GOGC         *int32   `json:"gogc"`
	AllocRate    *float64 `json:"alloc_bytes_per_sec"`

	// heap_profile, contention_profile (their sites are in Sites)
	MemProfileRate *int64 `json:"mem_profile_rate"`
	InuseBytes     int64  `json:"inuse_bytes"`
	AllocBytes     int64  `json:"alloc_bytes"`
	Unreadable     string `json:"unreadable"`

	// contention_profile (its sites are in Sites; kind in Kind)
	Rate        *int64 `json:"rate"`
	Contentions int64  `json:"contentions"`
	DelayNs     int64  `json:"delay_ns"`

	// cpu_profile
	FrequencyHz uint64    `json:"frequency_hz"`
	Samples     uint64    `json:"samples"`
	Funcs       []CPUFunc `json:"funcs"`

	// no_deadline
	ParkedNs uint64 `json:"parked_ns"`
	Func     string `json:"func"`

	// summary (fds), fd_pressure (open, limit)
	FDs   *FDs   `json:"fds"`
	Open  *int   `json:"open"`
	Limit uint64 `json:"limit"`

	// process (and accept_error's open_fds, fd_limit)
	OpenFDs      *int              `json:"open_fds"`
	FDLimit      uint64            `json:"fd_limit"`
	TCPStates    map[string]int    `json:"tcp_states"`
	CloseWait    []Socket          `json:"close_wait"`
	GOMAXPROCS   *int              `json:"gomaxprocs"`
	CPUQuota     *float64          `json:"cpu_quota"`
	CPUQuotaFrom string            `json:"cpu_quota_from"`
	CPUNs        *uint64           `json:"cpu_ns"`
	Unknown      map[string]string `json:"unknown"`

	// http_routes, http_request (requests.go)
	httpFields
}

// Frame is one stack frame; PC is set instead when it was not symbolized.
type Frame struct {
	Func    string `json:"func"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Inlined bool   `json:"inlined,omitempty"`
	PC      string `json:"pc,omitempty"`
}

// Acceptor is one of a listen_overflow's acceptors.
type Acceptor struct {
	Goid     uint64  `json:"goid"`
	State    string  `json:"state"`
	SinceNs  uint64  `json:"since_ns"`
	GoStatus string  `json:"go_status"`
	Accepts  uint64  `json:"accepts"`
	Stack    []Frame `json:"stack"`
}

// WaitStats is a summary's netpoll waits of one mode. SchedDelayP99Ns is
// nil in streams written before gonetscope recorded it.
type WaitStats struct {
	Count           uint64  `json:"count"`
	SchedDelayNs    uint64  `json:"sched_delay_ns"`
	P99Ns           uint64  `json:"p99_ns"`
	SchedDelayP99Ns *uint64 `json:"sched_delay_p99_ns"`
}

// GoroutineSite is one site of a goroutines event, or of a heap_profile
// or contention_profile event (Func, File, Line and their counts).
type GoroutineSite struct {
	Site      string `json:"site"`
	CreatedAt string `json:"created_at"`
	Live      int64  `json:"live"`

	Func         string `json:"func"`
	File         string `json:"file"`
	Line         int64  `json:"line"`
	InuseBytes   int64  `json:"inuse_bytes"`
	InuseObjects int64  `json:"inuse_objects"`
	AllocBytes   int64  `json:"alloc_bytes"`
	Contentions  int64  `json:"contentions"`
	DelayNs      int64  `json:"delay_ns"`
}

// CPUFunc is one function of a cpu_profile event.
type CPUFunc struct {
	Func    string `json:"func"`
	File    string `json:"file"`
	Samples uint64 `json:"samples"`
}

// key names a profile event's site: "func file:line".
func (g GoroutineSite) key() string { return fmt.Sprintf("%s %s:%d", g.Func, g.File, g.Line) }

// FDs are a summary's fds.
type FDs struct {
	Open      int            `json:"open"`
	Limit     uint64         `json:"limit"`
	TCPStates map[string]int `json:"tcp_states"`
}

// Socket is one socket of a process event's close_wait.
type Socket struct {
	FD    int32  `json:"fd"`
	Laddr string `json:"laddr"`
	Lport uint16 `json:"lport"`
	Raddr string `json:"raddr"`
	Rport uint16 `json:"rport"`
}

// ReadEvents reads an event stream, one JSON object per line. Blank lines
// are skipped; a line that is not JSON is an error naming its number.
func ReadEvents(r io.Reader) ([]Event, error) {
	var evs []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("line %d is not a gonetscope event: %w", n, err)
		}
		if e.Event == "" {
			return nil, fmt.Errorf("line %d is not a gonetscope event: no \"event\" field", n)
		}
		evs = append(evs, e)
	}
	return evs, sc.Err()
}
