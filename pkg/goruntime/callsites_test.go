package goruntime

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// objdumpSites lists, from the Go toolchain's own disassembler (an
// independent decoder: ours is x/arch's), the addresses of fn's
// instructions whose text matches re; every function's where fn is "".
func objdumpSites(t *testing.T, bin, fn string, re *regexp.Regexp) []uint64 {
	t.Helper()
	sym := "."
	if fn != "" {
		sym = "^" + regexp.QuoteMeta(fn) + "$"
	}
	out, err := exec.Command("go", "tool", "objdump", "-s", sym, bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool objdump: %v\n%s", err, out)
	}
	// "  file.go:123\t0x4a5b6c\t\tf9400fe1\t\tMOVD 24(RSP), R1"
	var sites []uint64
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Split(strings.TrimSpace(line), "\t")
		if len(fields) < 3 || !strings.HasPrefix(fields[1], "0x") || !re.MatchString(fields[len(fields)-1]) {
			continue
		}
		a, err := strconv.ParseUint(fields[1][2:], 16, 64)
		if err != nil {
			t.Fatalf("objdump line %q: %v", line, err)
		}
		sites = append(sites, a)
	}
	return sites
}

// TestClientRoundTripExits: the sites pkg/requests probes for net/http's
// client round trips (CallsAndExits of (*Transport).roundTrip and
// (*persistConn).roundTrip) are those `go tool objdump` shows, in a
// plain and a stripped build for each arch (stripping moves no code, so
// the plain build, whose symbols objdump needs, is the reference for
// both). On arm64 (Go 1.26) no instruction after the call sees its
// return alone, so the exits are the callee's RETs: there the test also
// checks CallsAndExits' premise, that (*Transport).roundTrip is the
// callee's only caller in the binary.
func TestClientRoundTripExits(t *testing.T) {
	const caller, callee = "net/http.(*Transport).roundTrip", "net/http.(*persistConn).roundTrip"
	callRE := regexp.MustCompile(`^CALL ` + regexp.QuoteMeta(callee) + `\(SB\)$`)
	for _, goarch := range []string{"amd64", "arm64"} {
		ref := buildHTTPGet(t, goarch, "")
		wantCalls := objdumpSites(t, ref, caller, callRE)
		for _, ldflags := range []string{"", "-s -w"} {
			t.Run(goarch+"/"+strings.ReplaceAll(ldflags, " ", ""), func(t *testing.T) {
				bin := ref
				if ldflags != "" {
					bin = buildHTTPGet(t, goarch, ldflags)
				}
				f, funcs := funcsOf(t, bin, goarch)
				calls, returns, err := CallsAndExits(f, funcs, caller, callee)
				if err != nil {
					t.Fatal(err)
				}
				if got := addrs(calls); !slices.Equal(got, wantCalls) {
					t.Errorf("calls of %s at %#x; objdump says %#x", callee, got, wantCalls)
				}
				got := addrs(returns)
				if goarch == "arm64" && len(wantCalls) > 0 && !slices.Contains(got, wantCalls[0]+4) {
					rets := objdumpSites(t, ref, callee, regexp.MustCompile(`^RET\b`))
					if !slices.Equal(got, rets) {
						t.Errorf("exits at %#x; objdump's RETs of %s are at %#x", got, callee, rets)
					}
					callers := objdumpSites(t, ref, "", callRE)
					if len(callers) != len(wantCalls) {
						t.Errorf("%d calls of %s in the binary, %d in %s: a probe on its RETs fires for other callers", len(callers), callee, len(wantCalls), caller)
					}
					return
				}
				// Else each return is after its call, in the caller.
				if len(got) != len(wantCalls) {
					t.Fatalf("returns at %#x for calls at %#x", got, wantCalls)
				}
				for i, a := range got {
					if a <= wantCalls[i] {
						t.Errorf("return site %#x is not after its call at %#x", a, wantCalls[i])
					}
				}
			})
		}
	}
}

// buildHTTPGet builds testdata/httpget for goarch with ldflags and the
// other go build flags.
func buildHTTPGet(t *testing.T, goarch, ldflags string, flags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "httpget")
	cmd := exec.Command("go", append(append([]string{"build", "-ldflags=" + ldflags}, flags...), "-o", bin, "./testdata/httpget")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func addrs(sites []Site) []uint64 {
	var a []uint64
	for _, s := range sites {
		a = append(a, s.Addr)
	}
	return a
}
