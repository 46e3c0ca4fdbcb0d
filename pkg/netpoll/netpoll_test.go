package netpoll

import (
	"testing"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

func TestEventHeaderLayout(t *testing.T) {
	if err := bpfobj.SameLayout(bpfobj.EventHeader{}, netpollEventHeader{}); err != nil {
		t.Fatal(err)
	}
}
