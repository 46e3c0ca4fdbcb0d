package goruntime

// haveTSC: cputicks reads the time-stamp counter, the clock of the
// runtime's cputicks on amd64.
const haveTSC = true

// cputicks reads the TSC (RDTSC after LFENCE, as the runtime does).
func cputicks() uint64
