package event

import "github.com/rs/zerolog"

// Contention: a goroutine blocked on a sync.Mutex, RWMutex, WaitGroup,
// a channel or a select for at least --min-block (trace
// --contention). Goid and Stack (where it blocked) are in the Header.
type Contention struct {
	Header
	// WaitReason is the runtime's own ("sync.Mutex.Lock", "chan receive").
	WaitReason string
	// DelayNs runs from the park until the goroutine was made runnable
	// (the unlock, send or Done that woke it), SchedDelayNs from then
	// until it ran again, where ReadySeen; otherwise (trace --contention
	// does not probe the wake-ups) DelayNs runs until it ran again.
	DelayNs      uint64
	SchedDelayNs uint64
	ReadySeen    bool
}

func (c *Contention) MarshalZerologObject(e *zerolog.Event) {
	c.Header.marshal(e)
	e.Str("wait_reason", c.WaitReason).Uint64("delay_ns", c.DelayNs)
	if c.ReadySeen {
		e.Uint64("sched_delay_ns", c.SchedDelayNs)
	}
}
