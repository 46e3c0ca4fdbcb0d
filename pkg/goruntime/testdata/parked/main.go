// Command parked starts goroutines that wait in known ways, prints
// "ready", and waits for its stdin to close.
package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

//go:noinline
func receiver(ch chan int) { <-ch }

//go:noinline
func sleeper() { time.Sleep(time.Hour) }

//go:noinline
func spawn(ch chan int) {
	for range 5 {
		go receiver(ch)
	}
	go sleeper()
}

func main() {
	ch := make(chan int)
	spawn(ch)
	time.Sleep(100 * time.Millisecond) // let them park
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
