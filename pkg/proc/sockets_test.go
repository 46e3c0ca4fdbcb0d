package proc

import (
	"net"
	"os"
	"testing"
)

// Listeners counts this process's namespace's listening sockets: one more
// for each listener the test opens, IPv4 and IPv6, one fewer when closed.
func TestListeners(t *testing.T) {
	count := func() int {
		n, err := Listeners(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		l6 = nil // no IPv6 here
	}
	want := before + 1
	if l6 != nil {
		want++
		defer l6.Close()
	}
	if got := count(); got != want {
		t.Errorf("with our listeners open: %d listening, want %d", got, want)
	}
	l4.Close()
	if got := count(); got != want-1 {
		t.Errorf("after closing one: %d listening, want %d", got, want-1)
	}
}
