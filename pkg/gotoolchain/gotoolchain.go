// Package gotoolchain builds Go programs with a given Go release, fetched
// through GOTOOLCHAIN and the module proxy: the test targets and the
// programs cmd/gen-offsets reads runtime offsets from.
package gotoolchain

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// GOROOT returns the root of toolchain version ("go1.19.13"), downloading
// it into the module cache if needed; "local" is the go command's own.
func GOROOT(version string) (string, error) {
	cmd := exec.Command("go", "env", "GOROOT")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+version)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding toolchain %s: %w", version, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Build runs `go build flags... -o out .` in dir, a module of its own, with
// toolchain version and CGO_ENABLED=0, for this machine's architecture.
//
// The toolchain's own go command is run directly with its GOROOT and a
// GOPATH of its own: releases before go1.21 predate toolchain modules, and
// go1.19 fails with `import "": import of unknown directory` when its
// GOROOT lies in the GOPATH's module cache, where GOTOOLCHAIN puts it.
// GOFLAGS is replaced: a go env file may set flags older releases do not
// know (-buildvcs, before go1.18).
func Build(dir, version, out string, flags ...string) error {
	return BuildFor("", dir, version, out, flags...)
}

// BuildFor is Build for GOARCH goarch ("": this machine's).
func BuildFor(goarch, dir, version, out string, flags ...string) error {
	root, err := GOROOT(version)
	if err != nil {
		return err
	}
	gopath, err := os.MkdirTemp("", "gotoolchain-gopath")
	if err != nil {
		return err
	}
	defer func() {
		// The module cache is read-only; make it removable.
		exec.Command("chmod", "-R", "u+w", gopath).Run()
		os.RemoveAll(gopath)
	}()
	cmd := exec.Command(root+"/bin/go", append(append([]string{"build"}, flags...), "-o", out, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOROOT="+root, "GOTOOLCHAIN=local", "GOPATH="+gopath,
		"GOMODCACHE="+gopath+"/pkg/mod", "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0", "GOENV=off")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s with %s for %s: %v\n%s", strings.Join(flags, " "), version, goarch, err, o)
	}
	return nil
}
