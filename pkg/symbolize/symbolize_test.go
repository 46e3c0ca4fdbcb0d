package symbolize

import (
	"os"
	"runtime"
	"testing"
)

func TestParseMaps(t *testing.T) {
	maps := []byte(`55d0c0000000-55d0c0100000 r--p 00000000 08:01 123 /usr/bin/srv
55d0c0100000-55d0c0200000 r-xp 00100000 08:01 123 /usr/bin/srv
55d0c0200000-55d0c0300000 rw-p 00200000 08:01 123 /usr/bin/srv
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]
7f0000002000-7f0000003000 r-xp 00001000 08:01 9 /lib/with space.so (deleted)
`)
	got := ParseMaps(maps, "/usr/bin/srv")
	if len(got) != 3 {
		t.Fatalf("%d executable mappings, want 3: %+v", len(got), got)
	}
	if m := got[0]; m.Start != 0x55d0c0100000 || m.Limit != 0x55d0c0200000 || m.Offset != 0x100000 || !m.exe || m.Path != "/usr/bin/srv" {
		t.Errorf("executable mapping %+v", *m)
	}
	if got[1].exe || got[1].Path != "[vdso]" {
		t.Errorf("vdso mapping %+v", *got[1])
	}
	if got[2].Path != "/lib/with space.so" {
		t.Errorf("path with a space and (deleted): %q", got[2].Path)
	}
}

// The test binary symbolizes its own code: the PC of a function this test
// calls resolves to that function, whatever the load address.
func TestLookupSelf(t *testing.T) {
	s, err := Open(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pc, _, _, _ := runtime.Caller(0)
	fr, m, ok := s.Lookup(uint64(pc), true)
	if !ok || m == nil {
		t.Fatalf("no symbol for %#x", pc)
	}
	if want := runtime.FuncForPC(pc).Name(); fr.Func != want {
		t.Errorf("Lookup(%#x) = %q, want %q", pc, fr.Func, want)
	}
	if m.BuildID == "" {
		t.Error("no build id for the executable mapping")
	}
}
