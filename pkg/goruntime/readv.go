package goruntime

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// iovMax is how many pieces one process_vm_readv reads (the kernel's
// UIO_MAXIOV).
const iovMax = 1024

// readMany reads span bytes at each of addrs into out (len(addrs)*span
// bytes), and reports for each whether it was read. It reads up to 1024
// at a time with process_vm_readv (one system call instead of one pread
// each: a goroutine list of 20,000 goroutines is read in 20 calls), and
// falls back to mem, the process's /proc/PID/mem, for the pieces a batch
// did not read (an address unmapped meanwhile ends the batch there) or
// when process_vm_readv is refused.
func readMany(pid int, mem *os.File, addrs []uint64, span int, out []byte) []bool {
	ok := make([]bool, len(addrs))
	local := make([]unix.Iovec, 0, iovMax)
	remote := make([]unix.RemoteIovec, 0, iovMax)
	vmOK := true
	for lo := 0; lo < len(addrs); lo += iovMax {
		hi := min(lo+iovMax, len(addrs))
		done := lo
		if vmOK {
			local, remote = local[:0], remote[:0]
			for i := lo; i < hi; i++ {
				local = append(local, unix.Iovec{Base: (*byte)(unsafe.Pointer(&out[i*span])), Len: uint64(span)})
				remote = append(remote, unix.RemoteIovec{Base: uintptr(addrs[i]), Len: span})
			}
			n, err := unix.ProcessVMReadv(pid, local, remote, 0)
			if err != nil && n <= 0 {
				vmOK = false // such as EPERM: /proc/PID/mem from here on
			} else {
				// Whole pieces read, in order.
				for done < hi && n >= span {
					ok[done] = true
					done++
					n -= span
				}
			}
		}
		for i := done; i < hi; i++ {
			if addrs[i] == 0 {
				continue
			}
			if _, err := mem.ReadAt(out[i*span:(i+1)*span], int64(addrs[i])); err == nil {
				ok[i] = true
			}
		}
	}
	return ok
}

// GoroutinesAt reads the gs at addrs (such as pollDesc.rg) in one batch;
// ok[i] says whether addrs[i] was read.
func (p *Process) GoroutinesAt(addrs []uint64) (gs []G, ok []bool, err error) {
	if p.Bin.Offsets.GAtomicstatus == 0 {
		return nil, nil, fmt.Errorf("%w: the offsets of runtime.g of %s are not known", ErrNoGoroutineTable, p.Bin.GoVersion)
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, nil, err
	}
	defer mem.Close()
	gs, ok = p.readGs(mem, addrs)
	return gs, ok, nil
}

// readGs reads and decodes the gs at addrs in one batch; ok[i] says
// whether addrs[i] was read (gs[i] is zero where not).
func (p *Process) readGs(mem *os.File, addrs []uint64) (gs []G, ok []bool) {
	span := p.gSpan()
	buf := make([]byte, len(addrs)*span)
	ok = readMany(p.PID, mem, addrs, span, buf)
	gs = make([]G, len(addrs))
	for i, a := range addrs {
		if ok[i] {
			gs[i] = p.decodeG(a, buf[i*span:(i+1)*span])
		}
	}
	return gs, ok
}
