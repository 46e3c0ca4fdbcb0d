package goruntime

// OffsetsProgram is the program cmd/gen-offsets builds with each
// toolchain and reads the table's offsets from, and the tests build to
// check the table against this toolchain's DWARF: it uses the netpoller,
// and net/http's server and client, whose structs request tracing reads
// (pkg/requests). The linker keeps the DWARF of the types a program
// reaches, so it must reach all of them.
const OffsetsProgram = `package main

import (
	"fmt"
	"net"
	"net/http"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go http.Serve(ln, http.NotFoundHandler())
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
	}
	ln.Close()
	fmt.Println(err)
}
`
