package goruntime

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestGoroutines: a program with five goroutines parked on a channel and
// one asleep, built plain and as a stripped PIE (offsets from the version
// table, runtime.allgs found in the code of runtime.forEachG), is read
// from outside: status, wait reason, creation site and parent.
// GONETSCOPE_TEST_TOOLCHAINS (comma-separated) adds other Go versions.
func TestGoroutines(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("reading another process's memory needs root")
	}
	toolchains := []string{"local"}
	if v := os.Getenv("GONETSCOPE_TEST_TOOLCHAINS"); v != "" {
		toolchains = append(toolchains, strings.Split(v, ",")...)
	}
	for _, tc := range toolchains {
		for _, flags := range [][]string{nil, {"-ldflags=-s -w", "-buildmode=pie"}} {
			t.Run(tc+" "+strings.Join(flags, " "), func(t *testing.T) {
				// Its own module, so that older toolchains build it.
				dir := t.TempDir()
				src, err := os.ReadFile("testdata/parked/main.go")
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644)
				os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module parked\n\ngo 1.22\n"), 0o644)
				bin := filepath.Join(dir, "parked")
				build := exec.Command("go", append(append([]string{"build"}, flags...), "-o", bin, ".")...)
				build.Dir = dir
				build.Env = append(os.Environ(), "GOTOOLCHAIN="+tc, "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
				if out, err := build.CombinedOutput(); err != nil {
					t.Fatalf("go build: %v\n%s", err, out)
				}
				p := openParked(t, bin)
				if flags != nil && p.Bin.OffsetsFrom != "table" {
					t.Errorf("offsets from %q, want the table", p.Bin.OffsetsFrom)
				}
				gs, err := p.Goroutines()
				if err != nil {
					t.Fatal(err)
				}
				bySite := map[string][]G{}
				for _, g := range gs {
					if fs := p.Syms.Frames(g.GoPC, false); len(fs) > 0 {
						bySite[fs[0].Func] = append(bySite[fs[0].Func], g)
					}
				}
				spawned := bySite["main.spawn"]
				receivers, sleepers := 0, 0
				for _, g := range spawned {
					if g.Status != StatusWaiting || g.ParentGoid != 1 {
						t.Errorf("goroutine %d: %s, parent %d; want waiting, parent 1", g.Goid, g.Describe(), g.ParentGoid)
					}
					start := p.Syms.Frames(g.StartPC, true)
					switch {
					// go receiver(ch) runs a wrapper closure, main.spawn.gowrap1.
					case len(start) > 0 && strings.HasPrefix(start[0].Func, "main.spawn.gowrap") && g.WaitReason == "chan receive":
						receivers++
					case len(start) > 0 && start[0].Func == "main.sleeper" && g.WaitReason == "sleep":
						sleepers++
					default:
						t.Errorf("goroutine %d: starts at %v, %s", g.Goid, start, g.Describe())
					}
				}
				if receivers != 5 || sleepers != 1 {
					t.Errorf("found %d receivers and %d sleepers created in main.spawn, want 5 and 1; all: %+v", receivers, sleepers, gs)
				}
			})
		}
	}
}

// openParked runs bin (testdata/parked) until the test ends and opens it
// once its goroutines are parked.
func openParked(t *testing.T, bin string) *Process {
	t.Helper()
	cmd := exec.Command(bin)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	if sc := bufio.NewScanner(stdout); !sc.Scan() || sc.Text() != "ready" {
		t.Fatal("the target did not start")
	}
	p, err := OpenProcess(cmd.Process.Pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAllgsFromCode: the address of runtime.allgs found in the code of
// runtime.forEachG is the symbol's.
func TestAllgsFromCode(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("reading another process's memory needs root")
	}
	bin := filepath.Join(t.TempDir(), "parked")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/parked").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := openParked(t, bin)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fromSyms, err := allgsAddr(f, p.Syms)
	if err != nil {
		t.Fatal(err)
	}
	fromCode, err := allgsFromCode(f, p.Syms)
	if err != nil {
		t.Fatal(err)
	}
	if fromSyms != fromCode {
		t.Errorf("runtime.allgs: symbol %#x, from the code %#x", fromSyms, fromCode)
	}
}

func TestParseMaps(t *testing.T) {
	maps := []byte(`55d0c0000000-55d0c0100000 r--p 00000000 08:01 123 /usr/bin/srv
55d0c0100000-55d0c0200000 r-xp 00100000 08:01 123 /usr/bin/srv
55d0c0200000-55d0c0300000 rw-p 00200000 08:01 123 /usr/bin/srv
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]
7f0000002000-7f0000003000 r-xp 00001000 08:01 9 /lib/with space.so (deleted)
`)
	got := ParseMaps(maps, 123)
	if len(got) != 3 {
		t.Fatalf("%d executable mappings, want 3: %+v", len(got), got)
	}
	if m := got[0]; m.Start != 0x55d0c0100000 || m.Limit != 0x55d0c0200000 || m.Offset != 0x100000 || !m.Exe || m.Path != "/usr/bin/srv" {
		t.Errorf("executable mapping %+v", *m)
	}
	if got[1].Exe || got[1].Path != "[vdso]" {
		t.Errorf("vdso mapping %+v", *got[1])
	}
	if got[2].Path != "/lib/with space.so" || got[2].Exe {
		t.Errorf("path with a space and (deleted): %+v", *got[2])
	}
}

// The test binary symbolizes its own code: the PC of a function this test
// calls resolves to that function, whatever the load address.
func TestOpenSelf(t *testing.T) {
	p, err := OpenProcess(os.Getpid(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, _, _, _ := runtime.Caller(0)
	fs := p.Syms.Frames(uint64(pc), true)
	if len(fs) == 0 {
		t.Fatalf("no symbol for %#x", pc)
	}
	if want := runtime.FuncForPC(pc).Name(); fs[0].Func != want {
		t.Errorf("Frames(%#x) = %q, want %q", pc, fs[0].Func, want)
	}
	if m := p.MappingOf(uint64(pc)); m == nil || !m.Exe || m.BuildID == "" {
		t.Errorf("mapping of %#x: %+v, want the executable's with a build id", pc, m)
	}
}
