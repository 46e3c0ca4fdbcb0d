// Command mutextarget is a test target for the contention profiles: it
// turns on the runtime's mutex and block profiles (every event), and after
// a line on stdin four goroutines contend for one sync.Mutex in
// main.contend, each holding it about 200µs, 200 times each, while
// main.waitChan waits on a channel 50 times. Then each line on stdin is a
// command, after which it waits for the next (so nothing is recorded in
// between):
//
//	profile KIND FILE   write its own pprof profile KIND (mutex, block) to FILE
//
// With -mutex-only it turns on the mutex profile only.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

var (
	out = json.NewEncoder(os.Stdout)
	mu  sync.Mutex
)

//go:noinline
func contend(n int, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < n; i++ {
		mu.Lock()
		for end := time.Now().Add(200 * time.Microsecond); time.Now().Before(end); {
		}
		mu.Unlock()
	}
}

//go:noinline
func waitChan(ch chan int, n int) {
	for i := 0; i < n; i++ {
		<-ch
	}
}

func main() {
	mutexOnly := len(os.Args) > 1 && os.Args[1] == "-mutex-only"
	runtime.SetMutexProfileFraction(1)
	if !mutexOnly {
		// (SetBlockProfileRate has the runtime measure its tick rate;
		// with -mutex-only nothing does until the first pprof profile.)
		runtime.SetBlockProfileRate(1)
	}
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid()})
	in := bufio.NewScanner(os.Stdin)
	in.Scan()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go contend(200, &wg)
	}
	ch := make(chan int)
	done := make(chan struct{})
	go func() { waitChan(ch, 50); close(done) }()
	for i := 0; i < 50; i++ {
		time.Sleep(time.Millisecond)
		ch <- i
	}
	<-done
	wg.Wait()
	out.Encode(map[string]any{"op": "contended"})
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 3 && f[0] == "profile" {
			file, err := os.Create(f[2])
			if err == nil {
				err = pprof.Lookup(f[1]).WriteTo(file, 0)
				file.Close()
			}
			out.Encode(map[string]any{"op": "profile", "err": fmt.Sprint(err)})
		}
	}
}
