//go:build !amd64

package goruntime

// haveTSC is false: the runtime's cputicks elsewhere is not read here
// (on arm64 it is nanotime, whose rate is known).
const haveTSC = false

func cputicks() uint64 { return 0 }
