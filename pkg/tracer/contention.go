package tracer

import (
	"fmt"

	"github.com/gonetscope/gonetscope/pkg/contention"
)

// contentionTracking is pkg/contention as a feature (--contention): its
// uprobes on the runtime's blocking slow paths in each target, and the
// contention events of the blocks of at least --min-block.
func (t *Tracer) contentionTracking(c *contention.Objects) feature {
	return feature{
		hooks:   c.Hooks(),
		streams: []source{{"contention", c.Events(), c.Decode, c.Lost}},
		attach: func(tg *target) error {
			if tg.rt == nil {
				return nil // install noted why there are no symbols
			}
			skipped, err := c.Attach(tg.rt)
			if err != nil {
				tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no contention tracking: %v", err))
			}
			for _, s := range skipped {
				tg.bin.Limits = append(tg.bin.Limits, "contention not probed: "+s)
			}
			return nil
		},
		detach: func(tg *target) { c.Detach(tg.proc.PID) },
		close:  c.Close,
	}
}
