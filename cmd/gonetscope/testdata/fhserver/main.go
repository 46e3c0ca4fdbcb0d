// Command fhserver is a minimal main around github.com/valyala/fasthttp's
// server, for TestListenOverflowFasthttp and make test-kernels.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	log.Fatal(fasthttp.ListenAndServe(*addr, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") }))
}
