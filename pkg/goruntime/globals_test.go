package goruntime

import (
	"debug/elf"
	"go/version"
	"runtime"
	"testing"
)

// TestGlobalRules: in a program of this toolchain with a symbol table, the
// table's rules for a stripped binary find each runtime variable at its
// symbol's address.
func TestGlobalRules(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the rules read amd64 code")
	}
	e, ok := offsetsTable[version.Lang(runtime.Version())]
	if !ok {
		t.Skipf("%s is not in the table", runtime.Version())
	}
	bin := buildTiny(t, "")
	b, err := Inspect(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := OpenTable(f, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range RuntimeGlobals {
		rules := e.Globals[g.Name]
		if len(rules) == 0 {
			t.Errorf("%s: no rule in the table", g.Name)
		}
		for _, rule := range rules {
			got, err := ApplyGlobalRule(f, tab, rule)
			if err != nil {
				t.Errorf("%s: %v", g.Name, err)
				continue
			}
			found := false
			for _, s := range syms {
				if s.Name == g.Name {
					found = true
					if s.Value != got {
						t.Errorf("%s: the rule %+v finds %#x, the symbol is at %#x", g.Name, rule, got, s.Value)
					}
				}
			}
			if !found {
				t.Errorf("%s: no symbol", g.Name)
			}
		}
	}
}
