// Command leaktarget is a test target for goroutine tracking: after a line
// on stdin it runs, for -duration, a steady churn of short-lived goroutines
// at one go statement and, with -leak N, leaks N goroutines per -tick at
// another (they block forever). It prints, as JSON lines, the function and
// file:line of both go statements, and with -bench the cost per goroutine
// creation.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"sync"
	"time"
)

var (
	duration = flag.Duration("duration", 3*time.Second, "how long to run")
	tick     = flag.Duration("tick", 100*time.Millisecond, "how often to churn and leak")
	churn    = flag.Int("churn", 500, "short-lived goroutines per tick")
	leak     = flag.Int("leak", 0, "goroutines leaked per tick")
	life     = flag.Duration("life", 0, "each short-lived goroutine lives a random time up to this (0: it ends at once)")
	bench    = flag.Int("bench", 0, "instead: create and wait for this many goroutines, print the ns per goroutine")
	_        = flag.Bool("wait-stdin", true, "wait for a line on stdin before starting (always)")
)

var out = json.NewEncoder(os.Stdout)

func report(kv ...any) {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	out.Encode(m)
}

// nextLine is "file:line" of the line after its call.
func nextLine() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", file, line+1)
}

func funcName(f any) string { return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name() }

var (
	never = make(chan struct{})
	wg    sync.WaitGroup
)

func leaked() { <-never }

func shortLived() {
	if *life > 0 {
		time.Sleep(rand.N(*life))
	}
	wg.Done()
}

func main() {
	flag.Parse()
	report("op", "ready", "pid", os.Getpid())
	bufio.NewReader(os.Stdin).ReadString('\n')
	if *bench > 0 {
		start := time.Now()
		for i := 0; i < *bench; i++ {
			wg.Add(1)
			go shortLived()
			if i%1000 == 999 {
				wg.Wait()
			}
		}
		wg.Wait()
		report("op", "bench", "n", *bench, "ns_per_goroutine", time.Since(start).Nanoseconds()/int64(*bench))
		return
	}
	var leakAt, churnAt string
	leakedN, churned := 0, 0
	end := time.Now().Add(*duration)
	for time.Now().Before(end) {
		for i := 0; i < *leak; i++ {
			leakAt = nextLine()
			go leaked()
			leakedN++
		}
		for i := 0; i < *churn; i++ {
			wg.Add(1)
			churnAt = nextLine()
			go shortLived()
			churned++
		}
		time.Sleep(*tick)
	}
	wg.Wait()
	report("op", "sites", "leak_site", funcName(leaked), "leak_at", leakAt, "churn_site", funcName(shortLived), "churn_at", churnAt, "leaked", leakedN, "churned", churned)
	time.Sleep(500 * time.Millisecond) // a last interval with the tracer
}
