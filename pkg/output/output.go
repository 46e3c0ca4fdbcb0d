// Package output writes the event stream as JSON, one object per line.
package output

import (
	"bufio"
	"io"

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
