# gonetscope. `make demo` and `make test` need root (they load BPF programs);
# `make build` needs only Go: the BPF objects and headers are committed.

GO ?= go
BIN := bin
BPFTOOL ?= bpftool

.PHONY: all build demo test test-kernels bench generate vmlinux check-generate tracefs clean

all: build

# The product only; the demo and the benchmarks build their own programs.
# Static (no cgo: nothing in it needs libc), so it runs in any container
# image and maps no C library (1.4 MB of its RSS).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/gonetscope ./cmd/gonetscope

# The syscall tracepoints are found through tracefs; mount it where a minimal
# host or CI machine has not.
tracefs:
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

demo: build tracefs
	$(GO) build -o $(BIN)/demo ./cmd/demo
	$(GO) build -o $(BIN)/demoserver ./cmd/demo/demoserver
	$(BIN)/demo --gonetscope $(BIN)/gonetscope --server $(BIN)/demoserver

# -p 1: the test binaries share host-wide state (the host namespace's TCP
# counters, listeners under bursts), so they run one after another.
# -timeout: cmd/gonetscope's integration tests take 8-10 minutes on two
# CPUs, up to go test's default limit of 10.
test: tracefs
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 -timeout 30m ./...

# The integration tests on Debian's packaged kernels under qemu (TCG), once
# per hook mechanism each kernel offers: amd64 6.1 (Debian 12, the whole
# suite), 5.10 (Debian 11) and 6.12 (Debian 13), and arm64 6.1 under
# qemu-system-aarch64. This machine's own kernel (make test) refuses fentry
# and kprobes; these have them. `make -j2 test-kernels` runs two VMs at a
# time (one vCPU each; more starve each other on two cores). KERNELS picks
# some; KERNEL_ARGS is passed to scripts/kernels/run.sh, e.g.
# KERNELS=mine KERNEL_ARGS="--kernel-image PATH".
KERNELS ?= debian-6.1 debian-6.1-arm64 debian-5.10 debian-6.12
KERNEL_ARGS ?=
# What `--hooks auto` must choose on each kernel (the tests check it):
# fexit on inet_csk_accept needs bpf_get_func_ret (5.17); Debian's 6.1
# images before 6.1.172 refuse fentry on tcp_v4_syn_recv_sock, so the
# overflow hook takes kprobes there, and 6.1.172 (linux-image-6.1.0-48)
# takes fentry: run.sh fetches the newest image of the series, so either
# ("a|b") passes;
# Debian's arm64 6.1 loads no fentry program at all. The netpoll waits
# come from the socket tracepoints (tp_btf) from 6.3 on; before, from
# fentry/fexit on the functions they sit in where the kernel takes it
# (amd64 6.1), else from syscall tracepoints (5.10 lets no tracing program
# use socket storage; arm64 6.1 has no fentry).
AUTO_HOOKS_debian-5.10 := tcp_connect=fentry,inet_csk_accept=kretprobe,listen_overflow=fentry,netpoll=tracepoint,socket_calls=fentry
AUTO_HOOKS_debian-6.1 := tcp_connect=fentry,inet_csk_accept=fexit,listen_overflow=fentry|kprobe,netpoll=fentry,socket_calls=fentry
AUTO_HOOKS_debian-6.12 := tcp_connect=fentry,inet_csk_accept=fexit,listen_overflow=fentry,netpoll=tp_btf,socket_calls=fentry
AUTO_HOOKS_debian-6.1-arm64 := tcp_connect=kprobe,inet_csk_accept=kretprobe,listen_overflow=kprobe,netpoll=tracepoint,socket_calls=tracepoint
# The mechanisms each kernel offers, every one run through the tests.
HOOKS_ALL := fentry,kprobe,tracepoint
HOOKS_debian-6.1-arm64 := kprobe,tracepoint
# 5.10 has fentry but not bpf_get_func_ret, so forcing fentry everywhere
# fails (fexit on accept); auto runs its fentry tcp_connect with kretprobe.
HOOKS_debian-5.10 := auto,kprobe,tracepoint
# The tests that need a Go toolchain or promtool, or load the machine for a
# minute (TestStress, TestConnectionBurst), which the VM cannot afford
# under emulation; they use no hook that differs between kernels and run
# in `make test`. The goroutine dump, heap, GC and diagnose tests build
# their targets, some with other Go toolchains; the first three read
# memory only, and diagnose runs the same tracer the VM tests. So do the
# runtime-health tests (gc events, the goroutine scan, fd_pressure,
# no_deadline: /proc and memory reads, no hook), whose targets are built
# at run time, some with other toolchains. TestGRPCRequests and
# TestHTTPRequests run: their targets are in the payload (the latter's
# builds with other toolchains are left to make test).
VM_SKIP := ^(TestHTTP(Chi|Diagnose|Prometheus|SchedStarved|Fanout|H2Downstream)|TestGRPC(Prometheus|OlderVersion|Diagnose)|TestTraceBuilds|TestTraceContainer|TestRefusesNonGo|TestGoroutine|TestMetrics|TestProfile|TestGoroutineGauge|TestListenMetrics|TestStress|TestConnectionBurst|TestExecInto|TestAcceptorStatusStripped|TestDistroGoServer|TestHeap|TestGC|TestDiagnose|TestReport|TestLeakScan|TestFDPressure|TestNoDeadline|TestContention)
# Each gonetscope start takes 15-30 s under emulation, so to keep CI within
# its time, 6.1 (amd64) runs the whole suite and the other kernels a named
# subset: the exact attribution of connects, accepts and netpoll waits on
# every hook path, on the host and in a container, what auto picks, the
# overflow drop hook, stacks, bad input, and which syscall tracepoints
# are held (on the sock path with fentry, which this host lacks: 6.1 and
# 6.12; 5.10, on the syscall path, skips it). VM_FULL=1 runs everything everywhere.
VM_SUBSET := TestTrace|TestAutoHooks|TestTraceFromContainer|TestStacks|TestListenOverflowFinalACK|TestBadInput|TestRefusesWithoutHostPID|TestNsInit|TestSyscallTracepoints|TestSyscallTracepointsFollowTargets
# arm64 also runs request tracing: gRPC's layouts are read from arm64
# code there (pkg/goruntime grpccode.go), and the net/http client's round
# trips end at RETs (goruntime.CallsAndExits).
VM_SUBSET_debian-6.1-arm64 := |TestGRPCRequests|TestHTTPRequests
VM_FULL ?=
vm_run = $(if $(or $(VM_FULL),$(filter debian-6.1,$(1))),,-test.run '^($(VM_SUBSET)$(VM_SUBSET_$(1)))$$')

test-kernels: $(addprefix test-kernel-,$(KERNELS))

# The payload: static binaries of the tests and their targets, per GOARCH.
kernel-payload-%:
	rm -rf .cache/kernels/payload-$* && mkdir -p .cache/kernels/payload-$*
	export CGO_ENABLED=0 GOARCH=$* && \
	$(GO) build -o .cache/kernels/payload-$*/gonetscope ./cmd/gonetscope && \
	$(GO) build -o .cache/kernels/payload-$*/nettarget ./cmd/gonetscope/internal/targets/nettarget && \
	$(GO) build -o .cache/kernels/payload-$*/httptarget ./cmd/gonetscope/internal/targets/httptarget && \
	$(GO) build -ldflags='-s -w' -o .cache/kernels/payload-$*/httptarget-stripped ./cmd/gonetscope/internal/targets/httptarget && \
	$(GO) test -c -o .cache/kernels/payload-$*/gonetscope.test ./cmd/gonetscope && \
	$(GO) build -o .cache/kernels/payload-$*/listentarget ./cmd/gonetscope/internal/targets/listentarget && \
	$(GO) build -o .cache/kernels/payload-$*/ackoverflow ./cmd/gonetscope/testdata/ackoverflow
	rm -rf .cache/kernels/fhserver-$* && cp -r cmd/gonetscope/testdata/fhserver .cache/kernels/fhserver-$*
	cd .cache/kernels/fhserver-$* && $(GO) get github.com/valyala/fasthttp@v1.78.0 && \
		CGO_ENABLED=0 GOARCH=$* $(GO) build -o ../payload-$*/fhserver .
	cd cmd/gonetscope/testdata/grpc && export GOWORK=off CGO_ENABLED=0 GOARCH=$* && \
		$(GO) build -o $(CURDIR)/.cache/kernels/payload-$*/grpctarget . && \
		$(GO) build -ldflags='-s -w' -o $(CURDIR)/.cache/kernels/payload-$*/grpctarget-stripped .

arch_of = $(if $(filter %-arm64,$(1)),arm64,amd64)

.SECONDEXPANSION:
.SECONDARY:
test-kernel-%: kernel-payload-$$(call arch_of,$$*)
	scripts/kernels/run.sh --kernel $* $(KERNEL_ARGS) --timeout 2400 .cache/kernels/payload-$(call arch_of,$*) -- \
		env GONETSCOPE_BIN=/payload/gonetscope GONETSCOPE_NETTARGET=/payload/nettarget GONETSCOPE_HTTPTARGET=/payload/httptarget GONETSCOPE_HTTPTARGET_STRIPPED=/payload/httptarget-stripped \
		GONETSCOPE_LISTENTARGET=/payload/listentarget GONETSCOPE_FASTHTTP=/payload/fhserver GONETSCOPE_TEST_NO_NETNS=1 \
		GONETSCOPE_GRPCTARGET=/payload/grpctarget GONETSCOPE_GRPCTARGET_STRIPPED=/payload/grpctarget-stripped GONETSCOPE_PROMTOOL=none \
		GONETSCOPE_TEST_AUTO_HOOKS='$(AUTO_HOOKS_$*)' GONETSCOPE_ACKOVERFLOW=/payload/ackoverflow \
		GONETSCOPE_TEST_HOOKS=$(or $(HOOKS_$*),$(HOOKS_ALL)) GONETSCOPE_TEST_DELAY=200ms GONETSCOPE_TEST_TIMING=causal GONETSCOPE_TEST_READY_TIMEOUT=240s \
		./gonetscope.test -test.v -test.count=1 -test.skip '$(VM_SKIP)' $(call vm_run,$*)

# Overhead benchmarks (root), written to BENCHMARKS.md: a Go HTTP server under
# fixed-rate load, untraced vs gonetscope vs bpftrace uprobes, the cost
# table, plus the pkg/tracer microbenchmarks (built with -c so the test
# binary keeps its DWARF: they trace their own process). BENCH_BEFORE is
# the revision measured side by side as "before" (the code before the
# overhead work, issue 12); empty skips it.
BENCH_BEFORE ?= 3ec18f4
bench: build tracefs
	@command -v bpftrace >/dev/null || (apt-get update -qq && apt-get install -y -qq bpftrace)
	$(GO) build -o $(BIN)/bench ./cmd/bench
	rm -rf .cache/before
	if [ -n "$(BENCH_BEFORE)" ]; then mkdir -p .cache/before && git archive $(BENCH_BEFORE) | tar -x -C .cache/before && \
		cd .cache/before && $(GO) build -o ../../$(BIN)/gonetscope-before ./cmd/gonetscope; fi
	$(GO) build -o $(BIN)/benchserver ./cmd/bench/benchserver
	# A third-party server, from the module proxy (a few minutes the first time).
	test -x $(BIN)/caddy || GOBIN=$(abspath $(BIN)) $(GO) install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9
	$(GO) test -c -o $(BIN)/tracer.test ./pkg/tracer
	cd pkg/tracer && ../../$(BIN)/tracer.test -test.run '^$$' -test.bench . -test.benchtime 500ms -test.count 3 | tee ../../$(BIN)/microbench.txt
	$(GO) test -c -o $(BIN)/gonetscope.test ./cmd/gonetscope
	cd cmd/gonetscope && ../../$(BIN)/gonetscope.test -test.run '^$$' -test.bench 'GoroutineCreation|ParkResumeContainer|NetpollPingPong|ConnectionChurn|UntracedSyscalls' -test.benchtime 3x | tee -a ../../$(BIN)/microbench.txt
	$(BIN)/bench -gonetscope $(BIN)/gonetscope -server $(BIN)/benchserver -caddy $(BIN)/caddy -extra $(BIN)/microbench.txt -o BENCHMARKS.md \
		$(if $(BENCH_BEFORE),-before $(BIN)/gonetscope-before -before-rev $(BENCH_BEFORE))

# Regenerate the bpf2go output from bpf/ and the committed kernel headers
# (needs clang, llvm-strip). The headers are an input, not an output: CO-RE
# relocates against the running kernel at load time, so they need not match
# it, and CI's host kernel is rebuilt under the same version now and then.
generate:
	$(GO) generate ./...

# Refresh headers/vmlinux-x86.h from the running kernel's BTF (needs bpftool);
# then `make generate` and commit both.
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > headers/vmlinux-x86.h

# Fails when the committed generated files differ from what `generate` makes.
check-generate: generate
	@git diff --exit-code --stat -- headers pkg '*_bpfel.go' '*_bpfel.o' && \
		test -z "$$(git status --porcelain --untracked-files=all -- headers pkg)" || \
		(git status --short -- headers pkg >&2; echo "generated files are stale or not committed: run 'make generate' and commit the result" >&2; exit 1)

clean:
	rm -rf $(BIN)
