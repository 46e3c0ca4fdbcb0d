package main

// The core integration check (checkTrace) against the test target built the
// ways production binaries are built: stripped, position-independent, with
// another Go version, inside a container's mount namespace. And the
// refusals of programs that are not Go.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// buildNettarget builds internal/targets/nettarget with the toolchain and flags given,
// in a module of its own (its go line is old enough for every toolchain
// gonetscope supports, back to go1.17), and returns the binary.
func buildNettarget(t *testing.T, toolchain string, flags ...string) string {
	t.Helper()
	files := map[string][]byte{"go.mod": []byte("module nettarget\n\ngo 1.17\n")}
	srcs, _ := filepath.Glob("internal/targets/nettarget/*.go")
	for _, f := range srcs {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(f)] = src
	}
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "nettarget")
	if err := gotoolchain.Build(dir, toolchain, bin, flags...); err != nil {
		t.Fatal(err)
	}
	return bin
}

type buildCase struct {
	name, toolchain string
	flags           []string
	offsetsFrom     string
	goVersion       string
}

// TestTraceBuilds: the same events, exactly, from a stripped binary (its
// runtime offsets from the version table), a PIE binary, a Go 1.27 binary,
// a stripped PIE Go 1.24 binary (the older epoll data layout), and stripped
// Go 1.21, 1.19 and 1.17 binaries (1.19 and 1.17: no tag in epoll data). One hook
// mode and one address family each: TestTrace covers the rest.
// GONETSCOPE_TEST_TOOLCHAINS adds a stripped PIE build per toolchain listed
// (such as go1.22.12,go1.23.12,go1.25.5), to verify a table entry by hand.
func TestTraceBuilds(t *testing.T) {
	cases := []buildCase{
		{"stripped", "local", []string{"-ldflags=-s -w"}, "table", ""},
		{"pie", "local", []string{"-buildmode=pie"}, "dwarf", ""},
		{"go1.27", "go1.27.3", nil, "dwarf", "go1.27.3"},
		{"go1.24-stripped-pie", "go1.24.11", []string{"-ldflags=-s -w", "-buildmode=pie"}, "table", "go1.24.11"},
		// go1.21: the first tagged epoll data; go1.19.8: what Debian 12
		// builds its Go packages with; go1.17: the first register ABI. The
		// older two register a plain *pollDesc with epoll.
		{"go1.21-stripped", "go1.21.13", []string{"-ldflags=-s -w"}, "table", "go1.21.13"},
		{"go1.19-stripped", "go1.19.8", []string{"-ldflags=-s -w"}, "table", "go1.19.8"},
		{"go1.17-stripped-pie", "go1.17.13", []string{"-ldflags=-s -w", "-buildmode=pie"}, "table", "go1.17.13"},
	}
	if s := os.Getenv("GONETSCOPE_TEST_TOOLCHAINS"); s != "" {
		for _, v := range strings.Split(s, ",") {
			cases = append(cases, buildCase{v + "-stripped-pie", v, []string{"-ldflags=-s -w", "-buildmode=pie"}, "table", v})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin := buildNettarget(t, tc.toolchain, tc.flags...)
			r := checkTrace(t, []string{bin}, "tracepoint", "tcp4")
			a := r.of("attached")[0]
			if a.OffsetsFrom != tc.offsetsFrom || len(withoutOldGC(a.GoVersion, featureLimits(a.Limits))) != 0 {
				t.Errorf("attached: offsets_from %q, limits %q; want %q and none", a.OffsetsFrom, a.Limits, tc.offsetsFrom)
			}
			if tc.goVersion != "" && a.GoVersion != tc.goVersion {
				t.Errorf("attached: go_version %q, want %q", a.GoVersion, tc.goVersion)
			}
		})
	}
}

// TestTraceContainer: a target in its own mount namespace, run from a path
// that does not exist outside it, is traced like any other: gonetscope reads
// it through /proc/PID/exe.
func TestTraceContainer(t *testing.T) {
	dir := t.TempDir() // stays empty outside the target's namespace
	script := fmt.Sprintf("mount -t tmpfs none %[1]s && cp %[2]s %[1]s/nettarget && exec %[1]s/nettarget \"$@\"", dir, nettargetBin)
	argv := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}
	r := checkTrace(t, argv, "tracepoint", "tcp4")
	if _, err := os.Stat(filepath.Join(dir, "nettarget")); err == nil {
		t.Fatalf("%s/nettarget is visible outside the target's mount namespace: the test did not isolate it", dir)
	}
	if a := r.of("attached")[0]; a.Exe != filepath.Join(dir, "nettarget") {
		t.Errorf("attached exe %q, want the path inside the container %s/nettarget", a.Exe, dir)
	}

	// Stacks (symbols through /proc/PID/exe and /proc/PID/mem) and the
	// goroutine uprobes (placed through /proc/PID/exe) work there too.
	r = traceCommand(t, argv, []string{"-rounds", "1"}, []string{"--hooks", "tracepoint", "--stacks", "--goroutines"})
	if a := r.of("attached"); len(a) != 1 || len(featureLimits(a[0].Limits)) != 0 || a[0].Hooks["goroutines"] != "uprobe" {
		t.Fatalf("attached: %+v", a)
	}
	// By mode too: the dial's own connect may have waited on the same fd.
	read := r.factsOf("read")[0]
	i := slices.IndexFunc(r.events, func(e ev) bool { return e.Event == "netpoll_wait" && e.Mode == "read" && e.FD == read.FD })
	if i < 0 || !slices.ContainsFunc(r.events[i].Stack, func(f frame) bool { return fmt.Sprintf("%s %s:%d", f.Func, f.File, f.Line) == "main.round "+read.At }) {
		t.Errorf("netpoll_wait in a container: want a stack through main.round at %s: %+v", read.At, r.events[i:min(i+1, len(r.events))])
	}
}

// TestRefusesNonGo: a C program and /bin/sleep are refused with one line
// that says so, before anything is loaded.
func TestRefusesNonGo(t *testing.T) {
	dir := t.TempDir()
	csrc := filepath.Join(dir, "prog.c")
	if err := os.WriteFile(csrc, []byte("#include <unistd.h>\nint main(void) { sleep(30); return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cbin := filepath.Join(dir, "cprog")
	if out, err := exec.Command("gcc", "-o", cbin, csrc).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	for _, argv := range [][]string{{cbin}, {"/bin/sleep", "30"}} {
		t.Run(filepath.Base(argv[0]), func(t *testing.T) {
			p := exec.Command(argv[0], argv[1:]...)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { p.Process.Kill(); p.Wait() }()
			time.Sleep(50 * time.Millisecond) // past exec
			before := gonetscopePrograms()
			cmd := exec.Command(gonetscopeBin, "trace", "--pid", fmt.Sprint(p.Process.Pid))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if _, ok := cmd.Run().(*exec.ExitError); !ok {
				t.Fatalf("want a non-zero exit; stderr %q", stderr.String())
			}
			want := fmt.Sprintf("PID %d (%s) is not a Go program", p.Process.Pid, filepath.Base(argv[0]))
			if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], want) {
				t.Errorf("stderr %q, want one line saying %q", stderr.String(), want)
			}
			for id := range gonetscopePrograms() {
				if !before[id] {
					t.Errorf("BPF program %d appeared during a refused run", id)
				}
			}
		})
	}
}
