package proc

import (
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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

// tcpTable reads a namespace's table as a stream: a wanted socket with
// its state and endpoints (IPv4 and IPv6), every listener's port counted
// whoever holds it, and nothing of the other lines (TIME_WAIT ones have
// inode 0; a line cut short is skipped).
func TestTCPTable(t *testing.T) {
	root := t.TempDir()
	oldRoot := Root
	t.Cleanup(func() { Root = oldRoot })
	Root = root
	dir := filepath.Join(root, "7", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp4 := head +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0\n" +
		"   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1\n" +
		"   2: 0100007F:1F90 0100007F:D432 06 00000000:00000000 03:00001000 00000000     0        0 0 3 0000000000000000\n" +
		"   3: 0100007F:1F90 0100007F:D433 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1\n" +
		"   4: 0100007F:1F91 0100007F:D434 01\n"
	tcp6 := head +
		"   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0\n" +
		"   1: 00000000000000000000000001000000:1F91 00000000000000000000000001000000:D435 0D 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1\n"
	os.WriteFile(filepath.Join(dir, "tcp"), []byte(tcp4), 0o644)
	os.WriteFile(filepath.Join(dir, "tcp6"), []byte(tcp6), 0o644)
	byInode, listening, err := tcpTable(7, map[uint64]int32{1002: 5, 2002: 6, 0: 9})
	if err != nil {
		t.Fatal(err)
	}
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	want := map[uint64]TCPSocket{
		1002: {State: "ESTABLISHED", Local: lo4, LocalPort: 8080, Remote: lo4, RemotePort: 54321},
		2002: {State: "state 0D", Local: lo6, LocalPort: 8081, Remote: lo6, RemotePort: 54325},
	}
	if !maps.Equal(byInode, want) {
		t.Errorf("wanted sockets %+v, want %+v", byInode, want)
	}
	if !maps.Equal(listening, map[uint16]int{8080: 1, 8081: 1}) {
		t.Errorf("listening ports %v, want 8080 and 8081 once each", listening)
	}
}
