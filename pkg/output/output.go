// Package output writes the event stream as JSON, one object per line.
package output

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// JSON writes events as JSON lines through zerolog, buffered until Flush.
type JSON struct {
	buf *bufio.Writer
	log zerolog.Logger
}

// NewJSON writes to w.
func NewJSON(w io.Writer) *JSON {
	buf := bufio.NewWriterSize(w, 64<<10)
	return &JSON{buf: buf, log: zerolog.New(buf)}
}

// Write appends one event.
func (j *JSON) Write(ev event.Event) error {
	j.log.Log().EmbedObject(ev).Send()
	return nil
}

// Flush hands buffered lines to the underlying writer.
func (j *JSON) Flush() error { return j.buf.Flush() }

// File is a JSON sink on a file that can be reopened (after log rotation).
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
	json *JSON
}

// OpenFile appends to path, creating it if needed.
func OpenFile(path string) (*File, error) {
	f := &File{path: path}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) open() error {
	fd, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening output %s: %w", f.path, err)
	}
	f.f, f.json = fd, NewJSON(fd)
	return nil
}

// Write appends one event.
func (f *File) Write(ev event.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.json.Write(ev)
}

// Flush writes buffered events to the file.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.json.Flush()
}

// Reopen flushes and closes the file and opens path again: after logrotate
// moved it, events go to a new file at the same path.
func (f *File) Reopen() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.json.Flush()
	f.f.Close()
	return f.open()
}

// Close flushes and closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.json.Flush()
	return f.f.Close()
}
