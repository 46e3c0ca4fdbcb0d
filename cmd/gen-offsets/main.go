// Command gen-offsets writes pkg/goruntime/offsets_table.go: the offsets of
// the runtime struct fields gonetscope reads, per Go minor version, for
// binaries built without DWARF.
//
// For each toolchain it builds a tiny program that uses the netpoller
// (fetching the toolchain through GOTOOLCHAIN and the module proxy when it
// is not installed) and reads the offsets from that program's DWARF. Two
// patch releases of one minor version must agree, or it fails: the table is
// keyed by minor version because the runtime's structs change only between
// them.
//
//	go run ./cmd/gen-offsets                       # the default toolchain list
//	go run ./cmd/gen-offsets -versions go1.28.0,...  # to add a version
//
// Adding a version: put it in -versions (and in defaultVersions below),
// run this, check pollTagFor in pkg/goruntime against the new toolchain's
// src/runtime/tagptr_64bit.go, and run the tests.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"go/version"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"debug/elf"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// defaultVersions are the toolchains the committed table was made from.
// go1.17 is the first with the register ABI (g in R14) on amd64; before
// go1.21 there are no toolchain modules for go1.16 and older anyway.
const defaultVersions = "go1.17.13,go1.18.10,go1.19.8,go1.19.13,go1.20.14,go1.21.13,go1.22.12,go1.23.12,go1.24.11,go1.25.5,go1.26.7,go1.26.8,go1.27.3"

func main() {
	versions := flag.String("versions", defaultVersions, "comma-separated Go toolchains to read")
	out := flag.String("o", "pkg/goruntime/offsets_table.go", "file to write")
	flag.Parse()
	if err := run(strings.Split(*versions, ","), *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen-offsets:", err)
		os.Exit(1)
	}
}

type entry struct {
	offsets       goruntime.Offsets
	waitReasons   []string
	funcIDWrapper uint8
	globals       map[string][]goruntime.GlobalRule
	from          []string // the toolchains that agree on it
}

// funcIDWrapper reads the value of abi.FuncIDWrapper (runtime.funcID_wrapper
// before go1.21) of a toolchain: the funcID of compiler-generated wrappers,
// which the runtime's tracebacks leave out. Its position in the constant
// block, counted from FuncIDNormal = iota.
func funcIDWrapper(v string) (uint8, error) {
	root, err := gotoolchain.GOROOT(v)
	if err != nil {
		return 0, err
	}
	for _, c := range []struct{ file, first, wrapper string }{
		{"src/internal/abi/symtab.go", "FuncIDNormal FuncID = iota", "FuncIDWrapper"},
		{"src/runtime/symtab.go", "funcID_normal funcID = iota", "funcID_wrapper"},
	} {
		src, err := os.ReadFile(filepath.Join(root, c.file))
		if err != nil {
			continue
		}
		text := string(src)
		start := strings.Index(text, c.first)
		if start < 0 {
			continue
		}
		n := 0
		for _, line := range strings.Split(text[start:], "\n") {
			line = strings.TrimSpace(line)
			if line == ")" {
				break
			}
			if line == "" || strings.HasPrefix(line, "//") {
				continue
			}
			if strings.Fields(line)[0] == c.wrapper {
				return uint8(n), nil
			}
			n++
		}
	}
	return 0, errors.New("no FuncIDWrapper constant")
}

// waitReasons reads runtime.waitReasonStrings of a toolchain, indexed by
// waitReason, from its runtime/runtime2.go: the order of the constants,
// then the string of each.
func waitReasons(v string) ([]string, error) {
	root, err := gotoolchain.GOROOT(v)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(filepath.Join(root, "src/runtime/runtime2.go"))
	if err != nil {
		return nil, err
	}
	text := string(src)
	start := strings.Index(text, "waitReasonZero ")
	if start < 0 {
		return nil, errors.New("no waitReason constants")
	}
	var names []string
	for _, line := range strings.Split(text[start:], "\n") {
		line = strings.TrimSpace(line)
		if line == ")" {
			break
		}
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		names = append(names, strings.Fields(line)[0])
	}
	vs := strings.Index(text, "var waitReasonStrings = [...]string{")
	if vs < 0 {
		return nil, errors.New("no waitReasonStrings")
	}
	strs := map[string]string{}
	for _, line := range strings.Split(text[vs:], "\n")[1:] {
		line = strings.TrimSpace(line)
		if line == "}" {
			break
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		q, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(val), ","))
		if err != nil {
			return nil, fmt.Errorf("waitReasonStrings line %q: %w", line, err)
		}
		strs[strings.TrimSpace(name)] = q
	}
	out := make([]string, len(names))
	for i, n := range names {
		s, ok := strs[n]
		if !ok && i > 0 {
			return nil, fmt.Errorf("%s has no string", n)
		}
		out[i] = s
	}
	return out, nil
}

// arches are the architectures gonetscope runs on; each has its own table.
var arches = []string{"amd64", "arm64"}

func run(versions []string, out string) error {
	dir, err := os.MkdirTemp("", "gen-offsets")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.17\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(goruntime.OffsetsProgram), 0o644); err != nil {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "// Code generated by cmd/gen-offsets; DO NOT EDIT.\n// go run ./cmd/gen-offsets -versions %s\n\npackage goruntime\n\n", strings.Join(versions, ","))
	buf.WriteString("// offsetsTables hold the runtime struct offsets per GOARCH and Go minor\n// version, read from the DWARF of programs built by these toolchains.\nvar offsetsTables = map[string]map[string]tableEntry{\n")
	for _, arch := range arches {
		table, err := readTable(dir, arch, versions)
		if err != nil {
			return err
		}
		fmt.Fprintf(&buf, "\t%q: {\n", arch)
		langs := make([]string, 0, len(table))
		for l := range table {
			langs = append(langs, l)
		}
		slices.SortFunc(langs, version.Compare)
		for _, l := range langs {
			e := table[l]
			fmt.Fprintf(&buf, "\t\t%q: {From: %#v, Offsets: %#v, WaitReasons: %#v, FuncIDWrapper: %d", l, e.from, e.offsets, e.waitReasons, e.funcIDWrapper)
			if len(e.globals) > 0 {
				fmt.Fprintf(&buf, ", Globals: %#v", e.globals)
			}
			buf.WriteString("},\n")
		}
		buf.WriteString("\t},\n")
	}
	buf.WriteString("}\n")
	src, err := format.Source(bytes.ReplaceAll(buf.Bytes(), []byte("goruntime."), nil))
	if err != nil {
		return fmt.Errorf("formatting: %w\n%s", err, buf.Bytes())
	}
	return os.WriteFile(out, src, 0o644)
}

// readTable builds the tiny program in dir with each toolchain for arch
// and reads its offsets.
func readTable(dir, arch string, versions []string) (map[string]*entry, error) {
	table := map[string]*entry{}
	for _, v := range versions {
		if !version.IsValid(v) {
			return nil, fmt.Errorf("%q is not a Go version", v)
		}
		bin := filepath.Join(dir, "tiny-"+arch+"-"+v)
		if err := gotoolchain.BuildFor(arch, dir, v, bin); err != nil {
			return nil, err
		}
		o, err := goruntime.OffsetsFromDWARF(bin)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", v, arch, err)
		}
		b, err := goruntime.InspectArch(bin, arch)
		if err != nil {
			return nil, err
		}
		if b.GoVersion != v {
			return nil, fmt.Errorf("asked for %s, got a binary built by %s", v, b.GoVersion)
		}
		wr, err := waitReasons(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		fw, err := funcIDWrapper(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		var gl map[string][]goruntime.GlobalRule
		// Only where the pclntab is read (Go 1.20+): what reads these
		// variables needs it.
		if version.Compare(version.Lang(v), "go1.20") >= 0 {
			if gl, err = globalRules(dir, arch, bin, v, b); err != nil {
				return nil, fmt.Errorf("%s %s: %w", v, arch, err)
			}
		}
		lang := version.Lang(v)
		e, ok := table[lang]
		if !ok {
			table[lang] = &entry{offsets: o, waitReasons: wr, funcIDWrapper: fw, globals: gl, from: []string{v}}
			continue
		}
		if e.offsets != o || !slices.Equal(e.waitReasons, wr) || e.funcIDWrapper != fw || !maps.EqualFunc(e.globals, gl, slices.Equal) {
			return nil, fmt.Errorf("%s and %s (%s) disagree: %+v vs %+v; the table cannot be keyed by minor version", e.from[0], v, arch, e.offsets, o)
		}
		e.from = append(e.from, v)
	}
	return table, nil
}

// globalRules finds how the code of the program bin (built by toolchain v
// for arch, with a symbol table) refers to each of the runtime variables
// gonetscope reads (goruntime.RuntimeGlobals), and checks that the rules
// find the same variables in a PIE build of the same program.
func globalRules(dir, arch, bin, v string, b *goruntime.Binary) (map[string][]goruntime.GlobalRule, error) {
	rules := map[string][]goruntime.GlobalRule{}
	if err := withSymbols(bin, b, func(f *elf.File, syms map[string]elf.Symbol, read func(goruntime.GlobalRule) (uint64, error)) error {
		tab, err := goruntime.OpenTable(f, b)
		if err != nil {
			return err
		}
		for _, g := range goruntime.RuntimeGlobals {
			s, ok := syms[g.Name]
			if !ok {
				continue // not in this version
			}
			r, err := goruntime.FindGlobalRules(f, tab, s.Value, s.Size, g.Funcs)
			if err != nil && goruntime.OptionalGlobals[g.Name] {
				fmt.Fprintf(os.Stderr, "gen-offsets: %s: no rule for %s (optional): %v\n", v, g.Name, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", g.Name, err)
			}
			rules[g.Name] = r
		}
		return nil
	}); err != nil {
		return nil, err
	}
	pie := bin + "-pie"
	if err := gotoolchain.BuildFor(arch, dir, v, pie, "-buildmode=pie"); err != nil {
		return nil, err
	}
	err := withSymbols(pie, b, func(f *elf.File, syms map[string]elf.Symbol, read func(goruntime.GlobalRule) (uint64, error)) error {
		for name, rs := range rules {
			for _, r := range rs {
				a, err := read(r)
				if err != nil {
					return fmt.Errorf("PIE build: %s: %w", name, err)
				}
				if a != syms[name].Value {
					return fmt.Errorf("PIE build: the rule %+v finds %s at %#x, its symbol is at %#x", r, name, a, syms[name].Value)
				}
			}
		}
		return nil
	})
	return rules, err
}

// withSymbols opens the executable at path and calls fn with its symbols
// by name and a reader of rules.
func withSymbols(path string, b *goruntime.Binary, fn func(*elf.File, map[string]elf.Symbol, func(goruntime.GlobalRule) (uint64, error)) error) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	list, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	syms := map[string]elf.Symbol{}
	for _, s := range list {
		syms[s.Name] = s
	}
	tab, err := goruntime.OpenTable(f, b)
	if err != nil {
		return err
	}
	return fn(f, syms, func(r goruntime.GlobalRule) (uint64, error) { return goruntime.ApplyGlobalRule(f, tab, r) })
}
