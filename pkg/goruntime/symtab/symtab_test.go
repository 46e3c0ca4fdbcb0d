package symtab_test

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// TestFramesMatchRuntime: a program prints the return pcs of a stack with
// two inlined calls and the frames runtime.CallersFrames makes of them;
// symtab, reading the running program from outside, must produce exactly
// those frames: function, file and line, inlined calls expanded. For a
// plain build and a stripped PIE one.
func TestFramesMatchRuntime(t *testing.T) {
	for _, flags := range [][]string{nil, {"-ldflags=-s -w", "-buildmode=pie"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			bin, pid, sc := startCallers(t, flags...)
			var pcs []uint64
			var want []string
			for sc.Scan() && sc.Text() != "end" {
				var pc uint64
				if _, err := fmt.Sscanf(sc.Text(), "pc %d", &pc); err == nil {
					pcs = append(pcs, pc)
				} else {
					want = append(want, sc.Text())
				}
			}
			b, err := goruntime.Inspect(bin)
			if err != nil {
				t.Fatal(err)
			}
			p, err := goruntime.OpenProcess(pid, b)
			if err != nil {
				t.Fatal(err)
			}
			tab := p.Syms
			var got []string
			inlined := 0
			for _, pc := range pcs {
				for _, f := range tab.Frames(pc, false) {
					got = append(got, fmt.Sprintf("frame %s %s %d", f.Func, f.File, f.Line))
					if f.Inlined {
						inlined++
					}
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("symtab:\n%s\nruntime.CallersFrames:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if inlined != 2 || !strings.Contains(want[0], "main.inlinedInner") {
				t.Errorf("want the two inlined calls expanded, got %d inlined frames; runtime says:\n%s", inlined, strings.Join(want, "\n"))
			}
			// Cached: the same answer again.
			if f1, f2 := tab.Frames(pcs[0], false), tab.Frames(pcs[0], false); len(f1) == 0 || &f1[0] != &f2[0] {
				t.Errorf("second lookup of %#x not served from the cache", pcs[0])
			}
		})
	}
}

var _ = os.Getpid
var _ = symtab.Frame{}

// startCallers builds testdata/callers with flags and starts it, until
// the test ends: its binary, its PID, and its output.
func startCallers(tb testing.TB, flags ...string) (bin string, pid int, out *bufio.Scanner) {
	tb.Helper()
	bin = filepath.Join(tb.TempDir(), "callers")
	build := exec.Command("go", append(append([]string{"build"}, flags...), "-o", bin, "./testdata/callers")...)
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	return bin, cmd.Process.Pid, bufio.NewScanner(stdout)
}

// TestFuncMatchesSymbols: Func finds every Go function of a program at the
// address its ELF symbol table gives, by its name alone (the index by
// name hash, blocks.go), and no function that is not there. The table is
// opened from the process with its executable, as the tracer does (the
// tables read through the block cache, far smaller than them).
func TestFuncMatchesSymbols(t *testing.T) {
	bin, pid, out := startCallers(t)
	out.Scan() // running
	b, err := goruntime.Inspect(bin)
	if err != nil {
		t.Fatal(err)
	}
	p, err := goruntime.OpenProcess(pid, b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	// The first function of each name, as the pclntab names them: an
	// assembly function and its ABI wrapper share one (the symbol table
	// adds .abi0 to the first); the linker's type: functions are named
	// apart there.
	first := map[string]elf.Symbol{}
	for _, s := range syms {
		name := strings.TrimSuffix(s.Name, ".abi0")
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || strings.HasPrefix(name, "go:") || strings.HasPrefix(name, "type:") {
			continue
		}
		if f, ok := first[name]; !ok || s.Value < f.Value {
			first[name] = s
		}
	}
	n := 0
	for name, s := range first {
		entry, end, ok := p.Syms.Func(name)
		if !ok || entry != s.Value || end < s.Value+s.Size {
			t.Errorf("%s: Func says [%#x, %#x) %v, the symbol table [%#x, %#x)", name, entry, end, ok, s.Value, s.Value+s.Size)
			continue
		}
		n++
	}
	if n < 1000 {
		t.Errorf("only %d functions checked", n)
	}
	for _, name := range []string{"main.noSuchFunction", "main.main.", "ain.main", ""} {
		if _, _, ok := p.Syms.Func(name); ok {
			t.Errorf("Func(%q) found a function", name)
		}
	}
}

// BenchmarkFrames: symbolizing one pc, from the cache and (uncached) from
// the tables.
func BenchmarkFrames(b *testing.B) {
	bin, pid, sc := startCallers(b)
	var pcs []uint64
	for sc.Scan() && sc.Text() != "end" {
		var pc uint64
		if _, err := fmt.Sscanf(sc.Text(), "pc %d", &pc); err == nil {
			pcs = append(pcs, pc)
		}
	}
	bi, err := goruntime.Inspect(bin)
	if err != nil {
		b.Fatal(err)
	}
	open := func() *symtab.Table {
		p, err := goruntime.OpenProcess(pid, bi)
		if err != nil {
			b.Fatal(err)
		}
		return p.Syms
	}
	b.Run("cached", func(b *testing.B) {
		tab := open()
		for i := 0; b.Loop(); i++ {
			tab.Frames(pcs[i%len(pcs)], false)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		// Distinct pcs through the first 640 KiB of code, more than the
		// cache holds: nearly every lookup decodes the tables.
		tab := open()
		entry, _, _ := tab.Func("main.main")
		base := entry - 320<<10
		for i := 0; b.Loop(); i++ {
			tab.Frames(base+uint64(i*7)%(640<<10)+tab.Bias(), false)
		}
	})
}
