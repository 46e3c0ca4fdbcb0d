package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Width is the text report's line width.
const Width = 100

// JSON writes the report as indented JSON (docs/diagnose.md).
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Text writes the checklist: a line per item (verdict, title, value and
// threshold), the evidence under each non-ok item, and the top findings.
// No line is longer than Width.
func (r *Report) Text(w io.Writer) error {
	var b strings.Builder
	t := r.Target
	fmt.Fprintf(&b, "Go network checklist: PID %d (%s, %s), %s from %s\n", t.PID, t.Comm, t.GoVersion,
		time.Duration(r.Window.DurationNs).Round(100*time.Millisecond), r.Window.Start.UTC().Format("2006-01-02 15:04:05 UTC"))
	if t.Detached != "" && t.Detached != "duration" && t.Detached != "signal" {
		fmt.Fprintf(&b, "  the trace ended early: %s\n", t.Detached)
	}
	b.WriteString("\n")
	for _, it := range r.Items {
		status := it.Status
		head := fmt.Sprintf("%-8s %-31s ", status, it.Title)
		var rest string
		switch {
		case it.Status == NA:
			rest = it.Why
		case it.Status == OK:
			rest = it.Value
		default:
			rest = it.Value + " (want " + it.Threshold + ")"
		}
		wrap(&b, head, strings.Repeat(" ", len(head)), rest)
		for _, e := range it.Evidence {
			wrap(&b, strings.Repeat(" ", 9)+"- ", strings.Repeat(" ", 11), e.Text)
			for _, f := range e.Stack {
				wrap(&b, strings.Repeat(" ", 13)+"at ", strings.Repeat(" ", 16), f)
			}
		}
	}
	c := r.Counts
	fmt.Fprintf(&b, "\n%d problem, %d warn, %d ok, %d n/a\n", c.Problem, c.Warn, c.OK, c.NA)
	if len(r.Findings) > 0 {
		b.WriteString("\nTop findings:\n")
		for i, f := range r.Findings {
			wrap(&b, fmt.Sprintf("%d. ", i+1), "   ", f)
		}
	} else {
		b.WriteString("Nothing found.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap writes text after first, continuing on lines that start with
// indent, breaking at spaces so no line exceeds Width (a single word
// longer than the room is cut).
func wrap(b *strings.Builder, first, indent, text string) {
	line := first
	room := func() int { return Width - len([]rune(line)) }
	empty := true
	for _, word := range strings.Fields(text) {
		n := len([]rune(word))
		if !empty && n+1 > room() {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line, empty = indent, true
		}
		if !empty {
			line += " "
		}
		for n > room() && room() > 0 {
			r := []rune(word)
			k := room()
			b.WriteString(line + string(r[:k]) + "\n")
			word, line, n = string(r[k:]), indent, len(r)-k
		}
		line += word
		empty = false
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
}
