package diagnose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// Thresholds decide each item's verdict. Defaults returns the documented
// defaults (docs/diagnose.md); a config file (--config, YAML or JSON)
// overrides any of them by its JSON name.
type Thresholds struct {
	// AcceptOverflows: more accept-queue overflows than this, over the
	// window and all listeners, is a problem (0: any overflow).
	AcceptOverflows uint64 `json:"accept_overflows"`
	// SlowPeerP99: a peer whose in_request netpoll waits have an io_wait
	// p99 over this is a problem, when at least SlowPeerMinWaits of its
	// waits were seen (fewer: warn).
	SlowPeerP99      Duration `json:"slow_peer_p99"`
	SlowPeerMinWaits int      `json:"slow_peer_min_waits"`
	// SchedDelayP99: the scheduler delay p99 of netpoll waits (of one
	// mode) over this is a problem; warn when the histogram cannot tell.
	SchedDelayP99 Duration `json:"sched_delay_p99"`
	// SchedDelayMinWaits: a mode with fewer waits in the window is not
	// judged (the p99 of so few is their maximum).
	SchedDelayMinWaits uint64 `json:"sched_delay_min_waits"`
	// HandshakeP99: a TCP handshake p99 over this is a problem.
	HandshakeP99 Duration `json:"handshake_p99"`
	// ConnectFailureRatio: failed connects over this share of all
	// connects is a problem; any failure below it is a warning.
	ConnectFailureRatio float64 `json:"connect_failure_ratio"`
	// FDUsage: open fds over this share of RLIMIT_NOFILE is a problem.
	FDUsage float64 `json:"fd_usage"`
	// CloseWait: this many sockets in CLOSE_WAIT or more is a problem.
	CloseWait int `json:"close_wait"`
	// RequestP99: a route whose request p99 is surely over this is a
	// problem (warn when the histogram's bucket straddles it); routes
	// with fewer than RequestMinCount requests are not judged.
	RequestP99      Duration `json:"request_p99"`
	RequestMinCount uint64   `json:"request_min_count"`
	// Request5xxRatio: 5xx answers over this share of all requests is a
	// problem; fewer, but any, a warning.
	Request5xxRatio float64 `json:"request_5xx_ratio"`
	// GCPauseP99: the p99 of the GC's stop-the-world pauses in the
	// window over this is a problem.
	GCPauseP99 Duration `json:"gc_pause_p99"`
	// HeapGrowth and HeapGrowthBytes: the heap in use (marked live by
	// the GC) growing by this factor and by this many bytes or more over
	// the window is a problem.
	HeapGrowth      float64 `json:"heap_growth"`
	HeapGrowthBytes uint64  `json:"heap_growth_bytes"`
	// LockDelay: goroutines waiting for locks (the runtime's mutex
	// profile) for more than this per second of the window, summed over
	// goroutines, is a problem.
	LockDelay Duration `json:"lock_delay"`
	// CPUSaturation: the process using this share of the CPUs it can run
	// on (GOMAXPROCS, or its CPU quota when lower) or more over the
	// window is a problem.
	CPUSaturation float64 `json:"cpu_saturation"`
}

// Defaults are the thresholds without a config file.
func Defaults() Thresholds {
	return Thresholds{
		AcceptOverflows:     0,
		SlowPeerP99:         Duration(100 * time.Millisecond),
		SlowPeerMinWaits:    3,
		SchedDelayP99:       Duration(10 * time.Millisecond),
		SchedDelayMinWaits:  10,
		HandshakeP99:        Duration(200 * time.Millisecond),
		ConnectFailureRatio: 0.01,
		FDUsage:             0.85,
		CloseWait:           10,
		RequestP99:          Duration(time.Second),
		RequestMinCount:     20,
		Request5xxRatio:     0.01,
		GCPauseP99:          Duration(5 * time.Millisecond),
		HeapGrowth:          1.5,
		HeapGrowthBytes:     8 << 20,
		LockDelay:           Duration(100 * time.Millisecond),
		CPUSaturation:       0.8,
	}
}

// LoadThresholds reads a config file over the defaults: YAML or JSON,
// with the names of Thresholds' JSON tags; an unknown name is an error.
func LoadThresholds(path string) (Thresholds, error) {
	th := Defaults()
	raw, err := os.ReadFile(path)
	if err != nil {
		return th, fmt.Errorf("reading --config: %w", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return th, fmt.Errorf("--config %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&th); err != nil {
		return th, fmt.Errorf("--config %s: %w (the names are in docs/diagnose.md)", path, err)
	}
	if th.FDUsage <= 0 || th.FDUsage > 1 || th.ConnectFailureRatio < 0 || th.ConnectFailureRatio > 1 || th.Request5xxRatio < 0 || th.Request5xxRatio > 1 ||
		th.CPUSaturation <= 0 || th.CPUSaturation > 1 {
		return th, fmt.Errorf("--config %s: fd_usage, connect_failure_ratio, request_5xx_ratio and cpu_saturation are shares between 0 and 1", path)
	}
	if th.HeapGrowth < 1 {
		return th, fmt.Errorf("--config %s: heap_growth is a factor of at least 1, such as 1.5", path)
	}
	return th, nil
}

// Duration is a time.Duration written as Go writes it ("100ms"); a plain
// number is nanoseconds.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*d = Duration(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
