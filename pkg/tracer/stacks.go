package tracer

import "github.com/gonetscope/gonetscope/pkg/event"

// symbolize turns h.Stack.PCs into h.Stack.Frames with the symbol table of h's target.
// Each table caches by pc, so a busy daemon symbolizes each call site once.
func (t *Tracer) symbolize(h *event.Header) {
	t.mu.Lock()
	syms := t.syms[int(h.PID)]
	t.mu.Unlock()
	if syms == nil {
		return
	}
	s := h.Stack
	s.Frames = make([]event.Frame, 0, 2*len(s.PCs))
	for i, pc := range s.PCs {
		fs := syms.Frames(pc, i == 0)
		if len(fs) == 0 {
			s.Frames = append(s.Frames, event.Frame{PC: pc})
			continue
		}
		s.Frames = append(s.Frames, fs...)
	}
}

// forgetSymbols drops pid's symbol table and its namespace id once its
// detached event is out.
func (t *Tracer) forgetSymbols(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, attached := t.targets[pid]; !attached {
		delete(t.syms, pid)
		t.nsPIDs.Delete(uint32(pid))
	}
}
