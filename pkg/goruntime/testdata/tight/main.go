// Command tight runs four goroutines in loops without calls, prints
// "ready" and waits for its stdin to close. Run with GOMAXPROCS=2, two of
// them are always waiting for a CPU, stopped by the runtime's
// asynchronous preemption (a signal, then a faked call of
// runtime.asyncPreempt at whatever instruction the loop was at).
package main

import (
	"fmt"
	"io"
	"os"
)

var sink [4]int

//go:noinline
func tight(n int) {
	for i := 0; ; i++ {
		sink[n] += i
	}
}

func main() {
	for i := 0; i < 4; i++ {
		go tight(i)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
