// Package control is the daemon's control protocol: one JSON request and
// one JSON reply per line over a unix socket that only root can open.
//
//	→ {"op":"attach","pid":4242}
//	← {"ok":true,"target":{"pid":4242,"comm":"server","exe":"/srv/server","go_version":"go1.26.8","since":"..."}}
//	→ {"op":"list"}
//	← {"ok":true,"targets":[...]}
//	→ {"op":"detach","pid":4242}
//	← {"ok":true}
//	→ anything else
//	← {"ok":false,"error":"..."}
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/gonetscope.sock"

// maxRequest bounds one request line; longer ones are refused.
const maxRequest = 4096

// Request is one control request.
type Request struct {
	Op  string `json:"op"` // attach, detach, list
	PID int    `json:"pid,omitempty"`
}

// Target describes one traced process.
type Target struct {
	PID       int       `json:"pid"`
	Comm      string    `json:"comm"`
	Exe       string    `json:"exe"`
	GoVersion string    `json:"go_version"`
	Since     time.Time `json:"since"`
}

// Reply answers one request.
type Reply struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Target  *Target  `json:"target,omitempty"`
	Targets []Target `json:"targets,omitempty"`
}

// Handler carries out requests.
type Handler interface {
	Attach(pid int) (Target, error)
	Detach(pid int) error
	List() []Target
}

// Server answers requests on a unix socket.
type Server struct {
	ln      net.Listener
	handler Handler
	wg      sync.WaitGroup
}

// Listen creates the socket at path with mode 0600. An existing socket
// file is replaced only if no daemon answers on it; anything else at
// path (a file, a device such as /dev/null) is left alone, and an error.
func Listen(path string, h Handler) (*Server, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("a daemon already listens on %s: stop it or use --socket", path)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("--socket %s: exists and is not a socket (%v): give a path that does not exist", path, st.Mode().Type())
		}
		os.Remove(path) // a stale socket of a daemon that died
	}
	old := unix.Umask(0o177) // no window in which the socket is open to others
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return &Server{ln: ln, handler: h}, nil
}

// Serve answers connections until ctx ends or Close.
func (s *Server) Serve(ctx context.Context) {
	go func() { <-ctx.Done(); s.ln.Close() }()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
	s.wg.Wait()
}

// Close stops listening and removes the socket file.
func (s *Server) Close() error {
	err := s.ln.Close()
	os.Remove(s.ln.Addr().String())
	return err
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReaderSize(io.LimitReader(c, maxRequest+1), maxRequest+1)
	enc := json.NewEncoder(c)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return
		}
		if err != nil && !errors.Is(err, io.EOF) {
			enc.Encode(Reply{Error: fmt.Sprintf("request longer than %d bytes", maxRequest)})
			return
		}
		enc.Encode(s.handle(line))
		if err != nil {
			return
		}
	}
}

func (s *Server) handle(line []byte) Reply {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Reply{Error: "malformed request: " + err.Error()}
	}
	switch req.Op {
	case "attach":
		if req.PID <= 0 {
			return Reply{Error: "attach needs a pid > 0"}
		}
		t, err := s.handler.Attach(req.PID)
		if err != nil {
			return Reply{Error: err.Error()}
		}
		return Reply{OK: true, Target: &t}
	case "detach":
		if req.PID <= 0 {
			return Reply{Error: "detach needs a pid > 0"}
		}
		if err := s.handler.Detach(req.PID); err != nil {
			return Reply{Error: err.Error()}
		}
		return Reply{OK: true}
	case "list":
		return Reply{OK: true, Targets: s.handler.List()}
	}
	return Reply{Error: fmt.Sprintf("unknown op %q: use attach, detach or list", req.Op)}
}

// Call sends one request to the daemon at path and returns its reply; a
// refused request comes back as an error.
func Call(path string, req Request) (Reply, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return Reply{}, fmt.Errorf("no daemon at %s (start one with 'gonetscope daemon'): %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Reply{}, fmt.Errorf("sending to the daemon: %w", err)
	}
	var rep Reply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return Reply{}, fmt.Errorf("reading the daemon's reply: %w", err)
	}
	if !rep.OK {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
