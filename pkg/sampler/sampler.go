// Package sampler loads bpf/sampler.bpf.c: the user stacks of one process,
// sampled on CPU (a perf event on every CPU's software clock) or weighted
// by time off CPU (sched_switch), for `gonetscope profile`.
package sampler

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

// Kind is what is sampled.
type Kind string

const (
	CPU    Kind = "cpu"    // on-CPU stacks, FrequencyHz samples per second per CPU
	OffCPU Kind = "offcpu" // stacks at switch-out, weighted by time until switch-in
)

// Options say what to sample.
type Options struct {
	PID         int
	Kind        Kind
	FrequencyHz uint64 // CPU only; zero: 99
}

// Sampler is the loaded and attached object.
type Sampler struct {
	coll   *ebpf.Collection
	perfFD []int
	link   link.Link
}

// Sample is one thread's stack with how often it was seen and, off CPU,
// for how long.
type Sample struct {
	TID   uint32
	Stack []uint64 // leaf first
	Count uint64
	Ns    uint64
}

// Load loads and attaches the sampler for opts.
func Load(opts Options) (*Sampler, error) {
	spec, err := loadSampler()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["target_tgid"].Set(uint32(opts.PID)); err != nil {
		return nil, fmt.Errorf("setting the target PID: %w", err)
	}
	bpfobj.NoEvents(spec)
	keep := "cpu_sample"
	if opts.Kind == OffCPU {
		keep = "offcpu_switch"
	}
	for name := range spec.Programs {
		if name != keep {
			delete(spec.Programs, name)
		}
	}
	coll, err := bpfobj.NewCollection(spec, ebpf.CollectionOptions{})
	if err != nil {
		return nil, bpfobj.LoadError("sampler BPF object", err)
	}
	s := &Sampler{coll: coll}
	switch opts.Kind {
	case CPU:
		freq := opts.FrequencyHz
		if freq == 0 {
			freq = 99
		}
		err = s.attachPerf(coll.Programs[keep], freq)
	case OffCPU:
		s.link, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[keep]})
		if err != nil {
			err = fmt.Errorf("attaching tp_btf/sched_switch: %w", err)
		}
	default:
		err = fmt.Errorf("unknown sample kind %q", opts.Kind)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// attachPerf opens a software CPU-clock event on every online CPU and runs
// prog on each sample. (Hardware cycles need a PMU, which VMs often lack.)
func (s *Sampler) attachPerf(prog *ebpf.Program, freq uint64) error {
	cpus, err := onlineCPUs()
	if err != nil {
		return err
	}
	for _, cpu := range cpus {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_SOFTWARE,
			Config: unix.PERF_COUNT_SW_CPU_CLOCK,
			Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			// A fixed period of CPU-clock nanoseconds: an hrtimer that
			// fires exactly freq times per second of CPU time.
			Sample: uint64(time.Second) / freq,
			Bits:   unix.PerfBitDisabled,
		}
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("opening the CPU clock perf event on CPU %d: %w", cpu, err)
		}
		s.perfFD = append(s.perfFD, fd)
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
			return fmt.Errorf("attaching the sampler to CPU %d: %w", cpu, err)
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			return fmt.Errorf("enabling the CPU clock perf event on CPU %d: %w", cpu, err)
		}
	}
	return nil
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,5").
func onlineCPUs() ([]int, error) {
	raw, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("listing online CPUs: %w", err)
	}
	return ParseCPUList(strings.TrimSpace(string(raw)))
}

// ParseCPUList parses a kernel CPU list such as "0-3,5".
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// Stop detaches the programs; the maps stay readable.
func (s *Sampler) Stop() {
	for _, fd := range s.perfFD {
		unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_DISABLE, 0)
		unix.Close(fd)
	}
	s.perfFD = nil
	if s.link != nil {
		s.link.Close()
		s.link = nil
	}
}

// Samples reads what was sampled so far, and how many samples were lost
// (no room for the stack or the sample).
func (s *Sampler) Samples() ([]Sample, uint64, error) {
	var (
		k   samplerSampleKey
		v   samplerSampleValue
		st  samplerStack
		out []Sample
	)
	stacks := s.coll.Maps[samplerMapStacks]
	it := s.coll.Maps[samplerMapSamples].Iterate()
	for it.Next(&k, &v) {
		if err := stacks.Lookup(k.Stack, &st); err != nil {
			continue
		}
		n := 0
		for n < len(st.Pcs) && st.Pcs[n] != 0 {
			n++
		}
		out = append(out, Sample{TID: k.Tid, Stack: slices.Clone(st.Pcs[:n]), Count: v.Count, Ns: v.Ns})
	}
	if err := it.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading samples: %w", err)
	}
	lost, err := bpfobj.SumPerCPU(s.coll.Maps[samplerMapSamplesLost], 0)
	if err != nil {
		return nil, 0, fmt.Errorf("reading lost samples: %w", err)
	}
	return out, lost, nil
}

// Close detaches and unloads everything.
func (s *Sampler) Close() error {
	s.Stop()
	s.coll.Close()
	return nil
}
