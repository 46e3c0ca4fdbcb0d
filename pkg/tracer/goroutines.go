package tracer

import (
	"fmt"

	"github.com/gonetscope/gonetscope/pkg/goroutines"
)

// goroutineTracking is pkg/goroutines as a feature (--goroutines): the
// lifecycle uprobes in each target, whose created and exited counts per
// site the goroutine scan (health.go) adds to its goroutines event.
type goroutineTracking struct {
	gr *goroutines.Objects
}

func (t *Tracer) goroutineTracking(gr *goroutines.Objects) feature {
	g := &goroutineTracking{gr: gr}
	return feature{
		hooks:  map[string]string{"goroutines": "uprobe"},
		attach: g.attach,
		detach: func(tg *target) { g.gr.Detach(tg.proc.PID) },
		close:  gr.Close,
	}
}

// attach places the lifecycle uprobes in a target; on failure the target
// is traced without them and its attached event says why.
func (g *goroutineTracking) attach(tg *target) error {
	if tg.rt == nil {
		return nil // install noted why there are no symbols
	}
	if err := g.gr.Attach(tg.rt); err != nil {
		tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no goroutine tracking: %v", err))
	}
	return nil
}
