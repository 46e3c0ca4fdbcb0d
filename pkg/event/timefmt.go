package event

import (
	"sync/atomic"
	"time"
)

// secondCache is the formatted text of one second in one zone: the part of
// TimeFormat before the nanoseconds and the part after them.
type secondCache struct {
	sec    int64
	loc    *time.Location
	prefix []byte // "2006-01-02T15:04:05."
	zone   []byte // "Z07:00"
}

var lastSecond atomic.Pointer[secondCache]

// AppendTime appends t in TimeFormat. Events come many to a second, so
// the date, clock and zone of the second are formatted once and only the
// nanoseconds per event: at a few hundred thousand events a second,
// time.Format was a quarter of the daemon's work per line.
func AppendTime(dst []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	c := lastSecond.Load()
	if c == nil || c.sec != sec || c.loc != loc {
		whole := t.Truncate(time.Second)
		s := whole.AppendFormat(nil, TimeFormat)
		// The nanoseconds are the 9 digits after the seconds' dot.
		dot := len("2006-01-02T15:04:05.")
		c = &secondCache{sec: sec, loc: loc, prefix: s[:dot], zone: s[dot+9:]}
		lastSecond.Store(c)
	}
	dst = append(dst, c.prefix...)
	ns := t.Nanosecond()
	var digits [9]byte
	for i := 8; i >= 0; i-- {
		digits[i] = byte('0' + ns%10)
		ns /= 10
	}
	dst = append(dst, digits[:]...)
	return append(dst, c.zone...)
}
