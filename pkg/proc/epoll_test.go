package proc

import (
	"slices"
	"testing"
)

// An epoll fd's fdinfo as Linux 6.18 writes it (fs/eventpoll.c,
// ep_show_fdinfo): the header lines, then one line per registered fd.
func TestParseEpollFdinfo(t *testing.T) {
	raw := []byte("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1039\n" +
		"tfd:        4 events:       19 data:                4  pos:0 ino:17a4ee sdev:f\n" +
		"tfd:        7 events: 8000201d data: 1c6ea27b2c000001  pos:0 ino:2d39 sdev:8\n" +
		"tfd: garbage\n")
	got := ParseEpollFdinfo(3, raw)
	want := []EpollEntry{{EpFD: 3, FD: 4, Events: 0x19, Data: 4}, {EpFD: 3, FD: 7, Events: 0x8000201d, Data: 0x1c6ea27b2c000001}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
