package main

// `gonetscope profile` against internal/targets/proftarget, whose time goes to known
// functions: the profile, read back by `go tool pprof` and by the profile
// package, must put them on top.

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// profileTarget starts bin with args, profiles it with kind until it exits,
// and returns the profile file and what the target printed.
func profileTarget(t *testing.T, bin, kind string, args ...string) (string, []map[string]any) {
	t.Helper()
	return profileTargetIn(t, onHost, bin, kind, args...)
}

// profileTargetIn is profileTarget with the target isolated by iso.
func profileTargetIn(t *testing.T, iso isolation, bin, kind string, args ...string) (string, []map[string]any) {
	t.Helper()
	target := isolated(iso, "", nil, append([]string{bin}, args...)...)
	stdin, nextFact := startTarget(t, target)
	var facts []map[string]any
	next := func() map[string]any {
		f := nextFact("")
		facts = append(facts, f)
		return f
	}
	pid := int(next()["pid"].(float64))
	if iso != onHost {
		if ns := nsPIDOf(t, target.Process.Pid); ns != pid {
			t.Fatalf("proftarget says it is PID %d, its namespace says %d", pid, ns)
		}
		pid = target.Process.Pid
	}

	out := filepath.Join(t.TempDir(), kind+".pb.gz")
	done, errOut := startGonetscope(t, pid, "profile", "--kind", kind, "--duration", "60s", "-o", out)
	io.WriteString(stdin, "go\n")
	for next()["op"] != "done" {
	}
	target.Wait()
	// The profile ends when its target exits.
	if err := <-done; err != nil {
		t.Fatalf("gonetscope profile: %v\n%s", err, errOut.String())
	}
	return out, facts
}

// pprofTop returns the function names of `go tool pprof -top`, in order.
func pprofTop(t *testing.T, file string) []string {
	t.Helper()
	out, err := exec.Command("go", "tool", "pprof", "-top", file).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -top: %v\n%s", err, out)
	}
	var fns []string
	table := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == "flat" {
			table = true
			continue
		}
		if table && len(f) >= 6 {
			fns = append(fns, strings.Join(f[5:], " "))
		}
	}
	if len(fns) == 0 {
		t.Fatalf("go tool pprof -top shows no function:\n%s", out)
	}
	return fns
}

func readProfile(t *testing.T, file string) *profile.Profile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	return p
}

func hasFunc(s *profile.Sample, name string) bool {
	for _, l := range s.Location {
		for _, ln := range l.Line {
			if ln.Function.Name == name {
				return true
			}
		}
	}
	return false
}

// TestProfileCPU: a stripped (no symbol table, no DWARF) PIE target that
// burns CPU in main.burnCPU; the CPU profile has it on top, and its
// mapping names the executable and its build id.
func TestProfileCPU(t *testing.T) {
	bin := buildTarget(t, "proftarget", "-buildmode=pie", "-ldflags=-s -w")
	file, _ := profileTarget(t, bin, "cpu", "-burn", "1500ms")
	if top := pprofTop(t, file); top[0] != "main.burnCPU" {
		t.Errorf("go tool pprof -top: first is %q, want main.burnCPU (all: %v)", top[0], top)
	}
	p := readProfile(t, file)
	wantID := gnuBuildID(t, bin)
	for _, s := range p.Sample {
		if !hasFunc(s, "main.burnCPU") {
			continue
		}
		m := s.Location[0].Mapping
		if m == nil || m.File != bin || m.BuildID != wantID {
			t.Fatalf("main.burnCPU's mapping %+v, want file %s and build id %s", m, bin, wantID)
		}
		resymbolized(t, p)
		return
	}
	t.Fatal("no sample in main.burnCPU")
}

// resymbolized drops every symbol from p and has `go tool pprof` find them
// again in the binary through the mappings: main.burnCPU must come back on
// top, which needs the right mapping offsets of a PIE.
func resymbolized(t *testing.T, p *profile.Profile) {
	t.Helper()
	for _, l := range p.Location {
		l.Line = nil
	}
	p.Function = nil
	for _, m := range p.Mapping {
		m.HasFunctions, m.HasFilenames, m.HasLineNumbers = false, false, false
	}
	file := filepath.Join(t.TempDir(), "nosym.pb.gz")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if top := pprofTop(t, file); top[0] != "main.burnCPU" {
		t.Errorf("re-symbolized by pprof: first is %q, want main.burnCPU (all: %v)", top[0], top)
	}
}

// gnuBuildID reads the executable's NT_GNU_BUILD_ID note.
func gnuBuildID(t *testing.T, path string) string {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sec := f.Section(".note.gnu.build-id")
	if sec == nil {
		t.Fatalf("%s has no .note.gnu.build-id", path)
	}
	data, err := sec.Data()
	if err != nil || len(data) < 16+20 {
		t.Fatalf("reading .note.gnu.build-id: %v", err)
	}
	return hex.EncodeToString(data[16:36]) // after the 12-byte header and "GNU\0"
}

// TestProfileNetpoll: the target's only long network waits are in
// main.waitForPeer, one per request; the netpoll profile ranks it first
// and counts exactly one wait per request there.
func TestProfileNetpoll(t *testing.T) {
	bin := buildTarget(t, "proftarget")
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) { checkProfileNetpoll(t, iso, bin) })
	}
}

func checkProfileNetpoll(t *testing.T, iso isolation, bin string) {
	const waits = 30
	file, _ := profileTargetIn(t, iso, bin, "netpoll", "-waits", fmt.Sprint(waits), "-delay", "10ms")
	if top := pprofTop(t, file); top[0] != "main.waitForPeer" {
		t.Errorf("go tool pprof -top: first is %q, want main.waitForPeer (all: %v)", top[0], top)
	}
	p := readProfile(t, file)
	idx := map[string]int{}
	for i, st := range p.SampleType {
		idx[st.Type] = i
	}
	var n, wait, io, sched int64
	for _, s := range p.Sample {
		if !hasFunc(s, "main.waitForPeer") {
			continue
		}
		if s.Label["mode"][0] != "read" {
			t.Errorf("wait in main.waitForPeer with mode %v, want read", s.Label["mode"])
		}
		n += s.Value[idx["waits"]]
		wait += s.Value[idx["wait"]]
		io += s.Value[idx["io_wait"]]
		sched += s.Value[idx["sched_delay"]]
	}
	if n != waits {
		t.Errorf("%d waits in main.waitForPeer, want %d", n, waits)
	}
	if io+sched != wait {
		t.Errorf("io_wait %d + sched_delay %d != wait %d", io, sched, wait)
	}
	// The peer sleeps 10ms before each answer: each wait is at least that.
	if min := int64(waits) * 10e6; wait < min {
		t.Errorf("total wait %dns in main.waitForPeer, want at least %dns", wait, min)
	}
}

// TestProfileBadInput: bad profile and metrics flags get one line naming
// the problem, a non-zero exit, and no output file.
func TestProfileBadInput(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	self := fmt.Sprint(os.Getpid())
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no PID", []string{"profile", "--kind", "cpu", "-o", "OUT"}, "no target: give the PID of a Go program with --pid"},
		{"bad kind", []string{"profile", "--pid", self, "--kind", "mutexes", "-o", "OUT"}, `unknown profile kind "mutexes"`},
		{"no output", []string{"profile", "--pid", self, "--kind", "cpu"}, "no output file: give one with -o out.pb.gz"},
		{"no such PID", []string{"profile", "--pid", "999999999", "-o", "OUT"}, "no process with PID 999999999"},
		{"not Go", []string{"profile", "--pid", fmt.Sprint(sleep.Process.Pid), "--kind", "cpu", "-o", "OUT"}, "is not a Go program"},
		{"bad metrics address", []string{"trace", "--pid", self, "--metrics-addr", "9464"}, `--metrics-addr "9464" is not HOST:PORT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pb.gz")
			args := append([]string{}, tc.args...)
			for i := range args {
				if args[i] == "OUT" {
					args[i] = out
				}
			}
			cmd := exec.Command(gonetscopeBin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("want a non-zero exit, got %v", err)
			}
			if s := strings.TrimSpace(stderr.String()); strings.Count(s, "\n") != 0 || !strings.Contains(s, tc.want) {
				t.Errorf("stderr %q, want one line saying %q", stderr.String(), tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was created by a refused run", out)
			}
		})
	}
}

// TestProfileOffCPU: the target's thread sleeps 400ms in one nanosleep in
// main.sleepInKernel; the off-CPU profile gives that stack at least that
// long, and no more than the profile lasted.
func TestProfileOffCPU(t *testing.T) {
	const sleep = 400 * time.Millisecond
	file, _ := profileTarget(t, buildTarget(t, "proftarget"), "offcpu", "-sleep", sleep.String())
	p := readProfile(t, file)
	var off int64
	for _, s := range p.Sample {
		if hasFunc(s, "main.sleepInKernel") {
			off += s.Value[1] // offcpu/nanoseconds
		}
	}
	if p.SampleType[1].Type != "offcpu" {
		t.Fatalf("sample types %v, want offcpu second", p.SampleType)
	}
	if off < sleep.Nanoseconds() || off > p.DurationNanos {
		t.Errorf("main.sleepInKernel off CPU %dns, want at least %dns and at most the profile's %dns", off, sleep.Nanoseconds(), p.DurationNanos)
	}
}
