package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestGoroutineLeak: a target leaks goroutines at one go statement while it
// churns many short-lived ones at another. goroutine_leak names the leaking
// function and the file:line of its go statement, exactly as the target
// reports them, and never the churning site; the last goroutines event
// counts exactly the goroutines the target leaked, and none of the churned.
func TestGoroutineLeak(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "leaktarget")
	if out, err := exec.Command("go", "build", "-o", bin, "../leaktarget").CombinedOutput(); err != nil {
		t.Fatalf("building leaktarget: %v\n%s", err, out)
	}
	r := traceCommand(t, []string{bin, "-leak", "20", "-churn", "500", "-tick", "100ms", "-duration", "2500ms"}, nil,
		[]string{"--goroutines", "--goroutine-interval", "300ms"})
	if a := r.of("attached"); len(a) != 1 || len(a[0].Limits) != 0 || a[0].Hooks["goroutines"] != "uprobe" {
		t.Fatalf("attached: %+v", a)
	}
	sites := r.factsOf("sites")
	if len(sites) != 1 {
		t.Fatalf("target reported %+v", r.facts)
	}
	f := sites[0]
	leaks := r.of("goroutine_leak")
	if len(leaks) == 0 {
		t.Fatalf("no goroutine_leak event; goroutines events: %+v", r.of("goroutines"))
	}
	for _, l := range leaks {
		if l.Site != f.LeakSite || l.CreatedAt != f.LeakAt || l.CreatedBy != "main.main" {
			t.Errorf("goroutine_leak site %q created at %q by %q, want %q at %q by main.main", l.Site, l.CreatedAt, l.CreatedBy, f.LeakSite, f.LeakAt)
		}
		if len(l.Growth) != 3 || len(l.OldestGoids) != 5 || l.Live <= 0 {
			t.Errorf("goroutine_leak: %+v", l)
		}
	}
	g := r.of("goroutines")
	if len(g) < 4 {
		t.Fatalf("%d goroutines events in 2.5s at a 300ms interval", len(g))
	}
	last := g[len(g)-1]
	i := slices.IndexFunc(last.Sites, func(s gsite) bool { return s.Site == f.LeakSite })
	j := slices.IndexFunc(last.Sites, func(s gsite) bool { return s.Site == f.ChurnSite })
	if i < 0 || j < 0 {
		t.Fatalf("last goroutines event lacks the sites: %+v", last)
	}
	if s := last.Sites[i]; s.Live != int64(f.Leaked) || s.Created != f.Leaked || s.Exited != 0 || s.CreatedAt != f.LeakAt {
		t.Errorf("leak site %+v, the target leaked %d at %s", s, f.Leaked, f.LeakAt)
	}
	if s := last.Sites[j]; s.Live != 0 || s.Created != f.Churned || s.Exited != f.Churned || s.CreatedAt != f.ChurnAt {
		t.Errorf("churn site %+v, the target ran %d to completion at %s", s, f.Churned, f.ChurnAt)
	}
}

// TestGoroutinesSteady: many short-lived goroutines (up to 300ms each,
// thousands alive at a time, their number going up and down) and no leak:
// no goroutine_leak event, and the churn is counted exactly.
func TestGoroutinesSteady(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "leaktarget")
	if out, err := exec.Command("go", "build", "-o", bin, "../leaktarget").CombinedOutput(); err != nil {
		t.Fatalf("building leaktarget: %v\n%s", err, out)
	}
	r := traceCommand(t, []string{bin, "-churn", "200", "-life", "300ms", "-tick", "20ms", "-duration", "2500ms"}, nil,
		[]string{"--goroutines", "--goroutine-interval", "250ms"})
	if l := r.of("goroutine_leak"); len(l) != 0 {
		t.Errorf("goroutine_leak on a steady target: %+v", l)
	}
	f := r.factsOf("sites")[0]
	g := r.of("goroutines")
	last := g[len(g)-1]
	if j := slices.IndexFunc(last.Sites, func(s gsite) bool { return s.Site == f.ChurnSite }); j < 0 || last.Sites[j].Created != f.Churned {
		t.Errorf("last goroutines event %+v, the target churned %d at %s", last, f.Churned, f.ChurnAt)
	}
}
