// Package gonetscope holds the bpf2go directives that compile bpf/*.bpf.c into
// the Go packages that load them: bpf/netpoll.bpf.c -> pkg/netpoll,
// bpf/tcp.bpf.c -> pkg/tcp, bpf/goroutines.bpf.c -> pkg/goroutines,
// bpf/acceptq.bpf.c -> pkg/acceptq, bpf/sampler.bpf.c -> pkg/sampler,
// bpf/execwatch.bpf.c -> pkg/execwatch, bpf/requests.bpf.c -> pkg/requests,
// bpf/contention.bpf.c -> pkg/contention.
// Run `make generate` (needs clang and
// llvm-strip; `make vmlinux` refreshes headers/vmlinux-x86.h with bpftool);
// the output is committed.
package gonetscope

//go:generate go tool bpf2go -go-package netpoll -output-dir pkg/netpoll -output-stem netpoll -target amd64,arm64 -type netpoll_wait_event -type epoll_wait_event -type event_header -type event_type -type mode -type target -type park_key -type park -type user_stack -type hist_key -type hist -type hist_metric -type netpoll_stack_key -type netpoll_stack_value -type cost_stage -type wait_kind -type conn_key -type conn -type parked_sock_key -type wait_hists_key -type wait_hists -type deadline -type call_key -type call_args netpoll bpf/netpoll.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package tcp -output-dir pkg/tcp -output-stem tcp -target amd64,arm64 -type tcp_connect_event -type tcp_accept_event -type accept_error_event -type connect_rec -type event_header -type event_type -type connect_start_hook -type user_stack -type hist_key -type hist -type hist_metric tcp bpf/tcp.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package goroutines -output-dir pkg/goroutines -output-stem goroutines -target amd64,arm64 -type g_layout -type goroutine_key -type goroutine -type site_key -type site_count goroutines bpf/goroutines.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package execwatch -output-dir pkg/execwatch -output-stem execwatch -target amd64,arm64 execwatch bpf/execwatch.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package sampler -output-dir pkg/sampler -output-stem sampler -target amd64,arm64 -type sample_key -type sample_value -type stack sampler bpf/sampler.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package acceptq -output-dir pkg/acceptq -output-stem acceptq -target amd64,arm64 -type listener_rec -type listen_key -type listen_stats -type acceptor_key -type acceptor -type port_key -type park_key -type park acceptq bpf/acceptq.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package requests -output-dir pkg/requests -output-stem requests -target amd64,arm64 -type req_layout -type req_key -type req_state -type req_wait -type req_fd_key -type req_fd -type req_hist_key -type req_hist -type http_request_event -type http_client_request_event -type client_state -type event_header -type addrs -type req_event_type -type req_count -type grpc_layout -type grpc_hist_key -type grpc_server_state -type grpc_client_state -type grpc_stream_key -type grpc_request_event -type grpc_client_request_event -type grpc_calls -type req_grpc_calls -type served_conn -type resp_head requests bpf/requests.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
//go:generate go tool bpf2go -go-package contention -output-dir pkg/contention -output-stem contention -target amd64,arm64 -type contention_key -type contention_value -type contention_event -type contention_event_type -type event_header contention bpf/contention.bpf.c -- -I headers -I bpf -O2 -g -Wall -Werror -Wpadded
