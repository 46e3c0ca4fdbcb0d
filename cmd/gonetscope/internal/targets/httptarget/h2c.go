//go:build go1.24

package main

import "net/http"

// HTTP/2 without TLS (h2c, prior knowledge) is net/http's own from Go
// 1.24 (http.Protocols); httptarget built with an older Go has no -h2c.
func init() {
	unencryptedHTTP2 = func(srv *http.Server) {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
}
