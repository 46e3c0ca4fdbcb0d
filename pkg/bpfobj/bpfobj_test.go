package bpfobj

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// cchars is s as a C char array of n bytes, NUL-padded.
func cchars(s string, n int) []int8 {
	b := make([]int8, n)
	for i := range len(s) {
		b[i] = int8(s[i])
	}
	return b
}

func TestCString(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []int8
		want string
	}{
		{"padded", cchars("nettarget", 16), "nettarget"},
		{"no NUL", cchars("abcdefgh", 8), "abcdefgh"},
		{"stops at first NUL", []int8{'a', 'b', 0, 'c', 0}, "ab"},
		{"all NUL", make([]int8, 16), ""},
		{"empty", nil, ""},
		// Bytes >= 0x80 are negative as int8 and must come back unchanged.
		{"UTF-8", cchars("é-ü", 16), "é-ü"},
	} {
		if got := CString(tc.in); got != tc.want {
			t.Errorf("%s: CString(%v) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestAddrs(t *testing.T) {
	var v4src, v4dst [16]uint8
	copy(v4src[:], []byte{10, 1, 2, 3})
	copy(v4dst[:], []byte{192, 168, 200, 9})
	v6src := netip.MustParseAddr("2001:db8::1").As16()
	v6dst := netip.MustParseAddr("fe80::aa:bb").As16()
	mapped := netip.MustParseAddr("::ffff:127.0.0.1").As16()

	for _, tc := range []struct {
		name         string
		family       uint16
		saddr, daddr [16]uint8
		want         event.Addrs
	}{
		{"IPv4", unix.AF_INET, v4src, v4dst, event.Addrs{
			Local: netip.MustParseAddr("10.1.2.3"), Remote: netip.MustParseAddr("192.168.200.9"),
			LocalPort: 8080, RemotePort: 54321,
		}},
		{"IPv6", unix.AF_INET6, v6src, v6dst, event.Addrs{
			Local: netip.MustParseAddr("2001:db8::1"), Remote: netip.MustParseAddr("fe80::aa:bb"),
			LocalPort: 8080, RemotePort: 54321,
		}},
		{"IPv4-mapped IPv6 is unmapped", unix.AF_INET6, mapped, v6dst, event.Addrs{
			Local: netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("fe80::aa:bb"),
			LocalPort: 8080, RemotePort: 54321,
		}},
		{"unknown family is zero", unix.AF_UNIX, v4src, v4dst, event.Addrs{}},
		{"family 0 is zero", 0, v4src, v4dst, event.Addrs{}},
	} {
		got := Addrs(tc.family, tc.saddr, tc.daddr, 8080, 54321)
		if got != tc.want {
			t.Errorf("%s: Addrs = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestView(t *testing.T) {
	type rec struct {
		A uint32
		B uint16
		C uint16
	}
	raw := make([]byte, 8)
	binary.LittleEndian.PutUint32(raw[0:], 0xdeadbeef)
	binary.LittleEndian.PutUint16(raw[4:], 0x1234)
	binary.LittleEndian.PutUint16(raw[6:], 0xabcd)

	r, err := View[rec](raw)
	if err != nil {
		t.Fatal(err)
	}
	if *r != (rec{0xdeadbeef, 0x1234, 0xabcd}) {
		t.Errorf("View = %+v", *r)
	}
	// Longer records are fine: events may grow at the end.
	if _, err := View[rec](append(raw, 0)); err != nil {
		t.Errorf("View of 9 bytes: %v", err)
	}
	for _, n := range []int{0, 1, 7} {
		if r, err := View[rec](raw[:n]); err == nil {
			t.Errorf("View of %d bytes = %+v, want an error", n, *r)
		}
	}
}

func TestClock(t *testing.T) {
	c := NewClock()
	const a, b = 5_000_000_000, 5_000_000_123
	if d := c.Time(b).Sub(c.Time(a)); d != b-a {
		t.Errorf("Time(%d) - Time(%d) = %v, want %dns", b, a, d, b-a)
	}
	// CLOCK_BOOTTIME now, converted, is the wall clock now.
	if d := time.Since(c.Time(Now())); d < -time.Second || d > time.Second {
		t.Errorf("Time(Now()) is %v away from time.Now()", d)
	}
}

func TestSameLayout(t *testing.T) {
	type base struct {
		_ struct{}
		A uint32
		B uint32
		_ [8]byte
	}
	type twin struct { // blank fields differ: they are ignored
		A uint32
		B uint32
		_ uint32
		_ uint32
	}
	type shifted struct { // same names and sizes, B 4 bytes later
		A uint32
		_ uint32
		B uint32
		_ uint32
	}
	type resized struct { // B smaller, same total size
		A uint32
		B uint16
		_ [10]byte
	}
	type renamed struct {
		A uint32
		X uint32
		_ [8]byte
	}
	type extra struct { // one named field more, same size
		A uint32
		B uint32
		C [8]byte
	}
	type longer struct {
		A uint32
		B uint32
		_ [16]byte
	}
	if err := SameLayout(base{}, twin{}); err != nil {
		t.Errorf("identical layouts: %v", err)
	}
	for _, other := range []any{shifted{}, resized{}, renamed{}, extra{}, longer{}} {
		if err := SameLayout(base{}, other); err == nil {
			t.Errorf("SameLayout(base, %T) = nil, want an error", other)
		}
	}
}
