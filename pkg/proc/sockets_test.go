package proc

import (
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
)

func fdOf(t *testing.T, c syscall.Conn) int32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int32
	rc.Control(func(f uintptr) { fd = int32(f) })
	return fd
}

// connect dials ln and accepts the connection: both ends, closed when
// the test ends.
func connect(t *testing.T, ln net.Listener) (dialed, accepted net.Conn) {
	t.Helper()
	dialed, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	if accepted, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	return dialed, accepted
}

// TestAcceptedFDs: of a connection this process both dialed and accepted,
// only the accepted end is listed.
func TestAcceptedFDs(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := map[string]string{"tcp4": "127.0.0.1", "tcp6": "[::1]"}[network]
			ln, err := net.Listen(network, host+":0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			dialed, accepted := connect(t, ln)
			fds := AcceptedFDs(os.Getpid())
			a, d := fdOf(t, accepted.(*net.TCPConn)), fdOf(t, dialed.(*net.TCPConn))
			if !slices.Contains(fds, a) || slices.Contains(fds, d) {
				t.Errorf("AcceptedFDs = %v; want the accepted fd %d and not the dialed fd %d", fds, a, d)
			}
		})
	}
}

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

// TestUnixListeners: a unix listener of this process is listed, by its
// fd; a unix connection it dialed and accepted is not, nor a TCP listener.
func TestUnixListeners(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	dialed, accepted := connect(t, ln)
	want := []int32{fdOf(t, ln.(*net.UnixListener))}
	if got := UnixListeners(os.Getpid()); !slices.Equal(got, want) {
		t.Errorf("UnixListeners = %v; want %v (accepted %d, dialed %d, TCP listener %d are not)", got, want,
			fdOf(t, accepted.(*net.UnixConn)), fdOf(t, dialed.(*net.UnixConn)), fdOf(t, tcp.(*net.TCPListener)))
	}
	ln.Close()
	if got := UnixListeners(os.Getpid()); len(got) != 0 {
		t.Errorf("UnixListeners after the close = %v, want none", got)
	}
}
