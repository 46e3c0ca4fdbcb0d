package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// statLine is a /proc/PID/stat line with 52 fields: field i (from 4 on) is
// 1000+i, except field 22, the start time.
func statLine(pid int, comm string, state byte, start string) []byte {
	f := []string{strconv.Itoa(pid), "(" + comm + ")", string(state)}
	for i := 4; i <= 52; i++ {
		if i == 22 {
			f = append(f, start)
		} else {
			f = append(f, strconv.Itoa(1000+i))
		}
	}
	return []byte(strings.Join(f, " ") + "\n")
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		comm  string
		state byte
		start uint64
	}{
		{"nettarget", 'S', 4_242_424},
		{"a) b (c)", 'R', 7},
		{"tmux: server", 'S', 123},
		{")", 'D', 1},
		{"", 'S', 0},
		{"zombie", 'Z', 1<<64 - 1},
	} {
		raw := statLine(1234, tc.comm, tc.state, strconv.FormatUint(tc.start, 10))
		p, err := parseStat(1234, raw)
		if err != nil {
			t.Errorf("%q: %v", raw, err)
			continue
		}
		want := Process{PID: 1234, StartTicks: tc.start, Comm: tc.comm, State: tc.state}
		if p != want {
			t.Errorf("parseStat(%q) = %+v, want %+v", raw, p, want)
		}
	}
}

func TestParseStatMalformed(t *testing.T) {
	full := string(statLine(1, "x", 'S', "99"))
	for _, raw := range []string{
		"",
		"1 x S 1 2 3",                     // no parentheses
		"1 )x( S" + full[len("1 (x) S"):], // ')' before '('
		strings.Join(strings.Fields(full)[:21], " "), // ends before field 22
		string(statLine(1, "x", 'S', "-5")),
		string(statLine(1, "x", 'S', "soon")),
	} {
		if p, err := parseStat(1, []byte(raw)); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", raw, p)
		}
	}
}

func TestOpenSelf(t *testing.T) {
	pid := os.Getpid()
	p, err := Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's comm has no spaces, so plain splitting finds field 22.
	f := strings.Fields(string(stat))
	if f[1] != "("+p.Comm+")" {
		t.Fatalf("stat field 2 is %q, comm %q: cannot split naively", f[1], p.Comm)
	}
	start, err := strconv.ParseUint(f[21], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// The state is the main thread's, which may be running or sleeping.
	if !strings.ContainsRune("RSD", rune(p.State)) {
		t.Errorf("Open(self).State = %q, want R, S or D", p.State)
	}
	want := Process{PID: pid, StartTicks: start, Comm: strings.TrimSuffix(string(comm), "\n"), State: p.State}
	if p != want {
		t.Errorf("Open(self) = %+v, want %+v", p, want)
	}
	if !p.Alive() {
		t.Error("Alive() = false for this process")
	}
	reused := p
	reused.StartTicks++
	if reused.Alive() {
		t.Error("Alive() = true for this PID with another start time")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(p.ExePath()); err != nil || got != exe {
		t.Errorf("ExePath() links to %q, %v, want %q", got, err, exe)
	}
}

func TestOpenNoProcess(t *testing.T) {
	// 1<<22 is PID_MAX_LIMIT: PIDs stay below it.
	for _, pid := range []int{-1, 0, 1 << 22} {
		if p, err := Open(pid); !errors.Is(err, ErrNoProcess) {
			t.Errorf("Open(%d) = %+v, %v, want ErrNoProcess", pid, p, err)
		}
	}
}

// A child that has exited but is not reaped yet is a zombie: not alive.
func TestAliveZombie(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	p, err := Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Errorf("Alive() = false for running child %+v", p)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		q, err := Open(pid)
		if err != nil {
			t.Fatal(err)
		}
		if q.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still in state %c after kill", pid, q.State)
		}
	}
	if p.Alive() {
		t.Error("Alive() = true for a zombie")
	}
	cmd.Wait()
	if _, err := Open(pid); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Open(reaped child) error %v, want ErrNoProcess", err)
	}
}

func TestOpenFDs(t *testing.T) {
	before, err := OpenFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	const extra = 3
	for range extra {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	after, err := OpenFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after != before+extra {
		t.Errorf("OpenFDs = %d, then %d after opening %d files", before, after, extra)
	}
}

func TestFDLimitSelf(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	got, err := FDLimit(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got != lim.Cur {
		t.Errorf("FDLimit(self) = %d, want RLIMIT_NOFILE soft limit %d", got, lim.Cur)
	}
}

func TestFDLimitParse(t *testing.T) {
	const head = "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n"
	const tail = "Max processes             63432                63432                processes \n"
	for _, tc := range []struct {
		name   string
		limits string
		want   uint64
		ok     bool
	}{
		{"number", head + "Max open files            4096                 524288               files     \n" + tail, 4096, true},
		{"unlimited", head + "Max open files            unlimited            unlimited            files     \n" + tail, 1<<64 - 1, true},
		{"no such line", head + tail, 0, false},
		{"no value", head + "Max open files\n" + tail, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "77"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "77", "limits"), []byte(tc.limits), 0o644); err != nil {
				t.Fatal(err)
			}
			old := Root
			Root = root
			t.Cleanup(func() { Root = old })

			got, err := FDLimit(77)
			if tc.ok && (err != nil || got != tc.want) {
				t.Errorf("FDLimit = %d, %v, want %d", got, err, tc.want)
			}
			if !tc.ok && err == nil {
				t.Errorf("FDLimit = %d, want an error", got)
			}
		})
	}
}

func TestParseTcpExt(t *testing.T) {
	netstat := "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 3 36 40\nIpExt: InNoRoutes\nIpExt: 0\n"
	c, err := ParseTcpExt(netstat)
	if err != nil || c["ListenOverflows"] != 36 || c["ListenDrops"] != 40 || c["SyncookiesSent"] != 3 {
		t.Errorf("ParseTcpExt = %v, %v; want ListenOverflows 36, ListenDrops 40", c, err)
	}
	if _, err := ParseTcpExt("IpExt: InNoRoutes\nIpExt: 0\n"); err == nil {
		t.Error("ParseTcpExt without TcpExt: no error")
	}
}

// CPUTime: utime (field 14) plus stime (15), in USER_HZ ticks, counted
// from the last ')' so that a comm with spaces and parentheses is skipped.
func TestParseCPUTime(t *testing.T) {
	got, err := parseCPUTime(7, statLine(7, "a) (b c", 'R', "5"))
	if want := time.Duration(1014+1015) * 10 * time.Millisecond; err != nil || got != want {
		t.Errorf("parseCPUTime: %v, %v; want %v", got, err, want)
	}
	// Our own, read from /proc: at least the CPU this loop burns, by the
	// kernel's own count (getrusage; a wall-clock loop gets less on a busy
	// machine), less a tick for each of utime and stime, which /proc
	// rounds down apart.
	var used time.Duration
	for used < 50*time.Millisecond {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		used = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if got, err := CPUTime(os.Getpid()); err != nil || got < used-20*time.Millisecond {
		t.Errorf("CPUTime of this process: %v, %v; getrusage says %v", got, err, used)
	}
}
