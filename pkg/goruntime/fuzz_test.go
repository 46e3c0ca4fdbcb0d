package goruntime

import (
	"bytes"
	"os"
	"testing"
)

// FuzzInspect: whatever the bytes, Inspect returns an error or a result,
// never panics (go test -fuzz=FuzzInspect ./pkg/goruntime). Seeds: this
// machine's /bin/true, a truncated and a corrupted copy of it, and junk.
func FuzzInspect(f *testing.F) {
	if elf, err := os.ReadFile("/bin/true"); err == nil {
		f.Add(elf)
		f.Add(elf[:len(elf)/2])
		bad := bytes.Clone(elf)
		for i := 64; i < len(bad); i += 97 {
			bad[i] ^= 0xff
		}
		f.Add(bad)
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := InspectReader("fuzz", bytes.NewReader(data))
		if err == nil && b == nil {
			t.Fatal("no error and no result")
		}
	})
}
