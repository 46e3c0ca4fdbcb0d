package tracer

import (
	"fmt"
	"slices"
	"strings"
)

// EventKinds are the event types that Options.Events (--events) chooses
// among. attached, detached and lost are always written.
var EventKinds = []string{"netpoll_wait", "epoll_wait", "tcp_connect", "tcp_accept", "accept_error",
	"listen_overflow", "goroutines", "goroutine_leak", "gc", "fd_pressure", "no_deadline", "http_request", "http_client_request", "http_routes", "grpc_request", "grpc_client_request", "grpc_methods", "contention"}

// DefaultEvents is every kind but epoll_wait: the netpoller's own blocks
// are hundreds of lines a second from any Go process and rarely what a
// human should look at. Their durations still count in the histograms.
var DefaultEvents = slices.DeleteFunc(slices.Clone(EventKinds), func(k string) bool { return k == "epoll_wait" })

// ParseEvents reads --events: "default", "all", or a comma-separated list
// of EventKinds.
func ParseEvents(s string) ([]string, error) {
	switch s {
	case "", "default":
		return DefaultEvents, nil
	case "all":
		return EventKinds, nil
	}
	var kinds []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(EventKinds, k) {
			return nil, fmt.Errorf("--events: unknown event %q: use all, default, or some of %s", k, strings.Join(EventKinds, ","))
		}
		kinds = append(kinds, k)
	}
	return kinds, nil
}
