package main

// gonetscope goroutines: every goroutine of a running Go program with its
// stack, read from the program's memory with no probe and without
// stopping it (see goruntime.Process.Dump).

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/pprof"
)

const goroutinesUsage = "gonetscope goroutines --pid PID [--json] [--system] [--runtime-frames] [-o goroutine.pb.gz]"

func goroutinesCmd(args []string) error {
	fs := flag.NewFlagSet("goroutines", flag.ContinueOnError)
	var (
		pid     = fs.Int("pid", 0, "PID of the Go program")
		asJSON  = fs.Bool("json", false, "one JSON object per goroutine per line instead of text")
		system  = fs.Bool("system", false, "include the runtime's own goroutines (GC workers, finalizers), as GOTRACEBACK=system does")
		rtFrame = fs.Bool("runtime-frames", false, "text: show the runtime's internal frames and wrappers too (runtime.gopark, ...)")
		out     = fs.String("o", "", "also write a pprof goroutine profile (gzipped protobuf) to this file")
	)
	fs.StringVar(out, "output", "", "same as -o")
	if err := parseFlags(fs, args, goroutinesUsage); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: %s", fs.Arg(0), goroutinesUsage)
	case *pid <= 0:
		return errors.New("no target: give the PID of a Go program with --pid")
	}
	// The same refusals as trace: no such process, not a Go program.
	pr, p, err := openTarget(*pid)
	if err != nil {
		return err
	}
	gs, err := p.Dump()
	if err != nil {
		return fmt.Errorf("PID %d (%s): %w", *pid, pr.Comm, err)
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	first := true
	for _, g := range gs {
		if g.System && !*system {
			continue
		}
		if *asJSON {
			if err := enc.Encode(goroutineJSON(g)); err != nil {
				return err
			}
			continue
		}
		if !first {
			w.WriteString("\n")
		}
		first = false
		writeGoroutine(w, p, g, *rtFrame)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if *out != "" {
		return writeGoroutineProfile(p, gs, *out)
	}
	return nil
}

// writeGoroutine writes g as runtime.Stack does: the header, each frame's
// function and file:line (+ the pc's offset in a physical frame), the go
// statement that created it. Arguments are not read: "(...)".
func writeGoroutine(w io.Writer, p *goruntime.Process, g goroutine, all bool) {
	fmt.Fprintln(w, g.Header())
	if g.Incomplete != "" {
		fmt.Fprintf(w, "\t(stack incomplete: %s)\n", g.Incomplete)
	}
	show := make([]bool, len(g.Stack))
	shown := 0
	for i, f := range g.Stack {
		callee := ""
		if i > 0 {
			callee = g.Stack[i-1].Func
		}
		if show[i] = p.ShownByRuntime(f, callee); show[i] {
			shown++
		}
	}
	// As the runtime: if no frame would be shown, show them all.
	all = all || shown == 0
	for i, f := range g.Stack {
		if !all && !show[i] {
			continue
		}
		fmt.Fprintf(w, "%s(...)\n\t%s:%d", f.Func, f.File, f.Line)
		if !f.Inlined {
			if fi, ok := p.Syms.FuncAt(f.PC); ok && f.PC > fi.Entry {
				fmt.Fprintf(w, " +%#x", f.PC-fi.Entry)
			}
		}
		fmt.Fprintln(w)
	}
	if c := g.CreatedBy; c.Func != "" && (all || p.ShownByRuntime(c, "")) {
		fmt.Fprintf(w, "created by %s", c.Func)
		if g.ParentGoid != 0 {
			fmt.Fprintf(w, " in goroutine %d", g.ParentGoid)
		}
		fmt.Fprintf(w, "\n\t%s:%d", c.File, c.Line)
		if fi, ok := p.Syms.FuncAt(c.PC); ok && c.PC > fi.Entry {
			fmt.Fprintf(w, " +%#x", c.PC-fi.Entry)
		}
		fmt.Fprintln(w)
	}
}

type goroutine = goruntime.Goroutine

// jsonGoroutine is one line of --json; README "goroutines --json".
type jsonGoroutine struct {
	Goid       uint64      `json:"goid"`
	Status     string      `json:"status"`
	WaitReason string      `json:"wait_reason,omitempty"`
	WaitingNs  int64       `json:"waiting_ns,omitempty"`
	Waiting    string      `json:"waiting,omitempty"`
	Func       string      `json:"func,omitempty"`
	CreatedBy  *jsonFrame  `json:"created_by,omitempty"`
	ParentGoid uint64      `json:"parent_goid,omitempty"`
	System     bool        `json:"system,omitempty"`
	Stack      []jsonFrame `json:"stack"`
	Incomplete string      `json:"stack_incomplete,omitempty"`
}

type jsonFrame struct {
	Func    string `json:"func"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Inlined bool   `json:"inlined,omitempty"`
}

func goroutineJSON(g goroutine) jsonGoroutine {
	j := jsonGoroutine{Goid: g.Goid, Status: g.Status.String(), WaitReason: g.WaitReason, Func: g.Func,
		ParentGoid: g.ParentGoid, System: g.System, Incomplete: g.Incomplete, Stack: []jsonFrame{}}
	if g.Waiting > 0 {
		j.WaitingNs, j.Waiting = g.Waiting, time.Duration(g.Waiting).Round(time.Millisecond).String()
	}
	if c := g.CreatedBy; c.Func != "" {
		j.CreatedBy = &jsonFrame{Func: c.Func, File: c.File, Line: c.Line}
	}
	for _, f := range g.Stack {
		j.Stack = append(j.Stack, jsonFrame{Func: f.Func, File: f.File, Line: f.Line, Inlined: f.Inlined})
	}
	return j
}

// writeGoroutineProfile writes gs as the runtime's goroutine profile
// (/debug/pprof/goroutine): one sample per distinct stack, its value the
// number of goroutines with that stack; the runtime's own goroutines left
// out, as the runtime does. A goroutine whose stack could not be read is
// a sample with the stack it has (often none) and a label saying why.
func writeGoroutineProfile(p *goruntime.Process, gs []goroutine, path string) error {
	b := pprof.NewBuilder(p, []*profile.ValueType{{Type: "goroutine", Unit: "count"}}, "goroutine")
	b.SetPeriod(&profile.ValueType{Type: "goroutine", Unit: "count"}, 1)
	b.CallerPCs = true
	type agg struct {
		pcs        []uint64
		incomplete string
		n          int64
	}
	var order []string
	by := map[string]*agg{}
	for _, g := range gs {
		if g.System {
			continue
		}
		var key strings.Builder
		pcs := make([]uint64, 0, len(g.Phys))
		for _, f := range g.Phys {
			pcs = append(pcs, f.ProfilePC())
			fmt.Fprintf(&key, "%x,", f.ProfilePC())
		}
		key.WriteString(g.Incomplete)
		a := by[key.String()]
		if a == nil {
			a = &agg{pcs: pcs, incomplete: g.Incomplete}
			by[key.String()] = a
			order = append(order, key.String())
		}
		a.n++
	}
	for _, k := range order {
		a := by[k]
		var labels map[string][]string
		if a.incomplete != "" {
			labels = map[string][]string{"stack_incomplete": {a.incomplete}}
		}
		b.Add(a.pcs, []int64{a.n}, labels, nil)
	}
	prof, err := b.Profile()
	if err != nil {
		return err
	}
	return writeProfile(prof, path)
}
