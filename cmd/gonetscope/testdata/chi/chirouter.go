package main

// Built into httptarget by TestHTTPChi (with this directory's go.mod):
// its routes on a chi router instead of a ServeMux.

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

func init() {
	router = func(items, fail, plain http.HandlerFunc) http.Handler {
		r := chi.NewRouter()
		r.Get("/items/{id}", items)
		r.Post("/fail", fail)
		r.HandleFunc("/plain/*", plain)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			whoami(w, r) // the 404s say who served them too
			http.NotFound(w, r)
		})
		return r
	}
}
