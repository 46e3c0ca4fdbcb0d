// Command httpget makes one GET with net/http's Transport: it links
// (*Transport).roundTrip and (*persistConn).roundTrip, whose calls and
// returns pkg/requests probes. It is built (for amd64 and arm64), not run.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	resp, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
}
