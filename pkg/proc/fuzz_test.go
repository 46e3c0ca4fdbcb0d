package proc

import "testing"

// FuzzParseStat: any /proc/PID/stat content parses or errors, never panics.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 99 1 1 1 1 1 1"))
	f.Add([]byte("1 (a) b (c)) Z 0"))
	f.Add([]byte(")("))
	f.Add([]byte("1 () R 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 18446744073709551615"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := parseStat(1, raw)
		if err == nil && p.State == 0 {
			t.Fatalf("parsed %q with no state", raw)
		}
	})
}
