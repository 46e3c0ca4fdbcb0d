# gonetscope. `make demo` and `make test` need root (they load BPF programs);
# `make build` needs only Go: the BPF objects and headers are committed.

GO ?= go
BIN := bin
BPFTOOL ?= bpftool

.PHONY: all build demo test test-kernels bench generate check-generate tracefs clean

all: build

build:
	$(GO) build -o $(BIN)/gonetscope ./cmd/gonetscope
	$(GO) build -o $(BIN)/nettarget ./cmd/nettarget
	$(GO) build -o $(BIN)/proftarget ./cmd/proftarget
	$(GO) build -o $(BIN)/demo ./cmd/demo
	$(GO) build -o $(BIN)/demoserver ./cmd/demoserver

# The syscall tracepoints are found through tracefs; mount it where a minimal
# host or CI machine has not.
tracefs:
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

demo: build tracefs
	$(BIN)/demo --gonetscope $(BIN)/gonetscope --server $(BIN)/demoserver

# -p 1: the test binaries share host-wide state (the host namespace's TCP
# counters, listeners under bursts), so they run one after another.
test: tracefs
	$(GO) vet ./...
	$(GO) test -count=1 -p 1 ./...

# The integration tests on Debian's 6.1 kernel under qemu, where fentry and
# kprobes exist, once per forced hook mechanism. KERNEL_ARGS can point
# scripts/kernels/run.sh at another kernel: KERNEL_ARGS="--kernel-image PATH".
KERNEL_ARGS ?=
KERNEL_PAYLOAD := .cache/kernels/payload
test-kernels:
	rm -rf $(KERNEL_PAYLOAD) && mkdir -p $(KERNEL_PAYLOAD)
	CGO_ENABLED=0 $(GO) build -o $(KERNEL_PAYLOAD)/gonetscope ./cmd/gonetscope
	CGO_ENABLED=0 $(GO) build -o $(KERNEL_PAYLOAD)/nettarget ./cmd/nettarget
	CGO_ENABLED=0 $(GO) test -c -o $(KERNEL_PAYLOAD)/gonetscope.test ./cmd/gonetscope
	CGO_ENABLED=0 $(GO) build -o $(KERNEL_PAYLOAD)/listentarget ./cmd/listentarget
	rm -rf .cache/kernels/fhserver && cp -r cmd/gonetscope/testdata/fhserver .cache/kernels/fhserver
	cd .cache/kernels/fhserver && $(GO) get github.com/valyala/fasthttp@v1.78.0 && CGO_ENABLED=0 $(GO) build -o ../payload/fhserver .
	scripts/kernels/run.sh $(KERNEL_ARGS) --timeout 900 $(KERNEL_PAYLOAD) -- \
		env GONETSCOPE_BIN=/payload/gonetscope GONETSCOPE_NETTARGET=/payload/nettarget \
		GONETSCOPE_LISTENTARGET=/payload/listentarget GONETSCOPE_FASTHTTP=/payload/fhserver GONETSCOPE_TEST_NO_NETNS=1 \
		GONETSCOPE_TEST_OVERFLOW_HOOK=kprobe \
		GONETSCOPE_TEST_HOOKS=fentry,kprobe,tracepoint GONETSCOPE_TEST_DELAY=200ms GONETSCOPE_TEST_TIMING=causal \
		./gonetscope.test -test.v -test.count=1 -test.skip '^(TestTraceBuilds|TestTraceContainer|TestRefusesNonGo|TestGoroutine|TestMetrics|TestProfile|TestGoroutineGauge|TestListenMetrics|TestStress|TestConnectionBurst)'
# (the skipped tests build targets with the Go toolchain, run promtool, or
# load the machine for a minute (TestStress, TestConnectionBurst), which
# the VM cannot afford under emulation; they use no hook that differs between kernels and
# run in `make test`.)

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
	$(GO) build -o $(BIN)/benchserver ./cmd/benchserver
	$(GO) test -c -o $(BIN)/tracer.test ./pkg/tracer
	cd pkg/tracer && ../../$(BIN)/tracer.test -test.run '^$$' -test.bench . -test.benchtime 500ms -test.count 3 | tee ../../$(BIN)/microbench.txt
	$(GO) test -c -o $(BIN)/gonetscope.test ./cmd/gonetscope
	cd cmd/gonetscope && ../../$(BIN)/gonetscope.test -test.run '^$$' -test.bench GoroutineCreation -test.benchtime 3x | tee -a ../../$(BIN)/microbench.txt
	$(BIN)/bench -gonetscope $(BIN)/gonetscope -server $(BIN)/benchserver -extra $(BIN)/microbench.txt -o BENCHMARKS.md \
		$(if $(BENCH_BEFORE),-before $(BIN)/gonetscope-before -before-rev $(BENCH_BEFORE))

# Regenerate headers/vmlinux.h from the running kernel's BTF and the bpf2go
# output (needs clang, llvm-strip, bpftool).
generate:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > headers/vmlinux-x86.h
	$(GO) generate ./...

# Fails when the committed generated files differ from what `generate` makes.
check-generate: generate
	@git diff --exit-code --stat -- headers pkg '*_bpfel.go' '*_bpfel.o' || \
		(echo "generated files are stale: run 'make generate' and commit the result" >&2; exit 1)

clean:
	rm -rf $(BIN)
