package goruntime

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildGRPCTarget builds cmd/gonetscope/testdata/grpc (a module of its
// own: grpc from the module proxy) for goarch with the flags given.
func buildGRPCTarget(t *testing.T, goarch string, flags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "grpctarget")
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, flags...), ".")...)
	cmd.Dir = filepath.Join("..", "..", "cmd", "gonetscope", "testdata", "grpc")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the gRPC target: %v\n%s", err, out)
	}
	return bin
}

// funcsOf opens bin, built for goarch, and names its functions from
// .gopclntab, as in a stripped binary.
func funcsOf(t *testing.T, bin, goarch string) (*elf.File, FuncLookup) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := inspectReader(bin, r, goarch)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := OpenTable(f, b)
	if err != nil {
		t.Fatal(err)
	}
	return f, tab.Func
}

// findGRPC runs FindGRPC on bin.
func findGRPC(t *testing.T, bin, goarch string) (GRPCProbes, GRPCLayout, *elf.File) {
	t.Helper()
	f, funcs := funcsOf(t, bin, goarch)
	p, l, err := FindGRPC(f, funcs)
	if err != nil {
		t.Fatal(err)
	}
	if p.ServerWhyNot != nil || p.ClientWhyNot != nil {
		t.Fatalf("FindGRPC: server %v, client %v", p.ServerWhyNot, p.ClientWhyNot)
	}
	return p, l, f
}

// TestGRPCLayoutMatchesDWARF: the layout read from grpc's code is what
// the binary's DWARF says, and the addresses are its symbols', in a
// plain and in a PIE build, for amd64 and arm64 (the code read differs:
// grpccode.go); a stripped PIE build reads the same offsets.
func TestGRPCLayoutMatchesDWARF(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) { checkGRPCLayout(t, goarch) })
	}
}

func checkGRPCLayout(t *testing.T, goarch string) {
	var offsets []GRPCLayout
	for _, flags := range [][]string{nil, {"-buildmode=pie"}} {
		bin := buildGRPCTarget(t, goarch, flags...)
		_, l, f := findGRPC(t, bin, goarch)
		m := memberOffsets(t, bin, "google.golang.org/grpc/internal/transport.ServerStream", "google.golang.org/grpc/internal/transport.Stream",
			"google.golang.org/grpc/internal/status.Status", "google.golang.org/genproto/googleapis/rpc/status.Status",
			"google.golang.org/grpc/internal/status.Error", "google.golang.org/grpc.ClientConn",
			"google.golang.org/grpc/internal/transport.http2Server")
		for _, c := range []struct {
			name string
			got  uint16
			want int64
		}{
			{"ServerStream.Stream.method", l.StreamMethod, m["google.golang.org/grpc/internal/transport.ServerStream.Stream"] + m["google.golang.org/grpc/internal/transport.Stream.method"]},
			{"status.Status.s", l.StatusProto, m["google.golang.org/grpc/internal/status.Status.s"]},
			{"spb.Status.Code", l.ProtoCode, m["google.golang.org/genproto/googleapis/rpc/status.Status.Code"]},
			{"status.Error.s", l.ErrorStatus, m["google.golang.org/grpc/internal/status.Error.s"]},
			{"ClientConn.target", l.ConnTarget, m["google.golang.org/grpc.ClientConn.target"]},
			{"http2Server.conn", l.ServerConn, m["google.golang.org/grpc/internal/transport.http2Server.conn"]},
		} {
			if int64(c.got) != c.want {
				t.Errorf("%v: %s at %d, DWARF says %d", flags, c.name, c.got, c.want)
			}
		}
		if l.ProtoCode == 0 || l.StreamMethod == 0 || l.ConnTarget == 0 || l.ServerConn == 0 {
			t.Errorf("%v: layout %+v: a field DWARF has past the start read as 0", flags, l)
		}
		syms, err := f.Symbols()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{}
		for _, s := range syms {
			want[s.Name] = s.Value
		}
		if a := want["go:itab.*google.golang.org/grpc/internal/status.Error,error"]; l.ErrorItab != a || a == 0 {
			t.Errorf("%v: the status error's itab at %#x, the symbol table says %#x", flags, l.ErrorItab, a)
		}
		if a := want["io.EOF"]; l.EOF != a || a == 0 {
			t.Errorf("%v: io.EOF at %#x, the symbol table says %#x", flags, l.EOF, a)
		}
		offsets = append(offsets, l)
	}
	_, l, _ := findGRPC(t, buildGRPCTarget(t, goarch, "-ldflags=-s -w", "-buildmode=pie"), goarch)
	want := offsets[1]
	want.ErrorItab, want.EOF = l.ErrorItab, l.EOF
	if l != want || l.ErrorItab == 0 || l.EOF == 0 {
		t.Errorf("stripped PIE: layout %+v, the PIE build with DWARF has %+v", l, offsets[1])
	}
}

// TestGRPCUnknownCodeFailsClosed: where one of the functions the layout
// is read from has other code (here: another function's), FindGRPC says
// so instead of reading an offset from it; the probes that need it are
// off, the others are found.
func TestGRPCUnknownCodeFailsClosed(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) { checkGRPCFailsClosed(t, goarch) })
	}
}

func checkGRPCFailsClosed(t *testing.T, goarch string) {
	f, funcs := funcsOf(t, buildGRPCTarget(t, goarch), goarch)
	other := func(swap string) FuncLookup {
		return func(name string) (uint64, uint64, bool) {
			if name == swap {
				return funcs("main.main")
			}
			return funcs(name)
		}
	}
	if _, _, err := FindGRPC(f, other(grpcStatusCode)); err == nil {
		t.Errorf("(*Status).Code with other code: no error")
	}
	p, l, err := FindGRPC(f, other(grpcServerStreamMethod))
	if err != nil || p.ServerWhyNot == nil || p.ClientWhyNot != nil {
		t.Errorf("(*ServerStream).Method with other code: err %v, server %v, client %v; want the server side off only", err, p.ServerWhyNot, p.ClientWhyNot)
	}
	p, l, err = FindGRPC(f, other(grpcErrorStatus))
	if err != nil || p.ClientWhyNot == nil || p.ServerWhyNot != nil {
		t.Errorf("(*Error).GRPCStatus with other code: err %v, server %v, client %v; want the client side off only", err, p.ServerWhyNot, p.ClientWhyNot)
	}
	if _, l, err = FindGRPC(f, other(grpcServerClose)); err != nil || l.ServerConn != 0 {
		t.Errorf("(*http2Server).Close with other code: err %v, conn at %d; want it unknown (0)", err, l.ServerConn)
	}
}
