package tcp

import (
	"testing"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

func TestEventHeaderLayout(t *testing.T) {
	if err := bpfobj.SameLayout(bpfobj.EventHeader{}, tcpEventHeader{}); err != nil {
		t.Fatal(err)
	}
}
