package requests

import "testing"

func TestGRPCNames(t *testing.T) {
	for c, want := range map[int]string{0: "OK", 1: "CANCELLED", 5: "NOT_FOUND", 7: "PERMISSION_DENIED", 16: "UNAUTHENTICATED", 17: "17", -1: ""} {
		if got := GRPCCodeName(c); got != want {
			t.Errorf("GRPCCodeName(%d) = %q, want %q", c, got, want)
		}
	}
	for full, want := range map[string][2]string{
		"/pkg.v1.Svc/Get": {"pkg.v1.Svc", "Get"}, "/grpc.health.v1.Health/Check": {"grpc.health.v1.Health", "Check"},
		"nolead/M": {"nolead", "M"}, "/bare": {"", "bare"},
	} {
		if s, m := SplitGRPCMethod(full); s != want[0] || m != want[1] {
			t.Errorf("SplitGRPCMethod(%q) = %q, %q; want %q", full, s, m, want)
		}
	}
	for target, want := range map[string][2]string{
		"127.0.0.1:50051": {"127.0.0.1", "50051"}, "dns:///db.internal:9090": {"db.internal", "9090"},
		"dns://8.8.8.8/db:443": {"db", "443"}, "passthrough:///[::1]:80": {"::1", "80"}, "unix:///run/x.sock": {"/run/x.sock", ""},
		"svc": {"svc", ""},
	} {
		if h, p := GRPCServerAddress(target); h != want[0] || p != want[1] {
			t.Errorf("GRPCServerAddress(%q) = %q, %q; want %q", target, h, p, want)
		}
	}
}
