// Package deploy holds the manifests that run gonetscope on a fleet: a
// Kubernetes DaemonSet and a systemd unit. Its tests check them the way the
// cluster and systemd will read them.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestDaemonSet decodes daemonset.yaml strictly into the Kubernetes API
// types (an unknown or misspelt field fails, as `kubectl apply
// --validate=strict` would) and checks what gonetscope needs of its pod.
func TestDaemonSet(t *testing.T) {
	raw, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(raw, &ds); err != nil {
		t.Fatalf("daemonset.yaml does not decode strictly into apps/v1 DaemonSet: %v", err)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion %q kind %q", ds.APIVersion, ds.Kind)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is not true: gonetscope refuses to run outside the host's PID namespace")
	}
	if pod.HostNetwork {
		t.Error("hostNetwork: gonetscope does not need the node's network namespace")
	}
	if sel := ds.Spec.Selector; sel == nil || sel.MatchLabels["app"] != ds.Spec.Template.Labels["app"] {
		t.Errorf("the selector %v does not match the pod's labels %v", sel, ds.Spec.Template.Labels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "daemon" {
		t.Errorf("args %q: want the daemon", c.Args)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: gonetscope needs only its capabilities")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("capabilities drop %v, want ALL", sc.Capabilities.Drop)
	}
	// What cmd/gonetscope checks at start (CAP_BPF, CAP_PERFMON,
	// CAP_SYS_PTRACE), reading other users' /proc/PID/fd, and raising
	// RLIMIT_MEMLOCK on kernels before 5.11.
	want := []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE"}
	if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("capabilities add %v, want exactly %v", sc.Capabilities.Add, want)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for path, readOnly := range map[string]bool{"/sys/kernel/btf": true, "/sys/kernel/tracing": true, "/run/gonetscope": false} {
		m, ok := mounts[path]
		if !ok {
			t.Errorf("no volume mounted at %s", path)
			continue
		}
		if hostPaths[m.Name] != path {
			t.Errorf("%s mounts volume %q, which is host path %q, want %q", path, m.Name, hostPaths[m.Name], path)
		}
		if m.ReadOnly != readOnly {
			t.Errorf("%s read-only %v, want %v", path, m.ReadOnly, readOnly)
		}
	}
	if i := slices.Index(c.Args, "--socket"); i < 0 || i+1 >= len(c.Args) || filepath.Dir(c.Args[i+1]) != "/run/gonetscope" {
		t.Errorf("args %q: the control socket must be on the /run/gonetscope host path, for attach from the node", c.Args)
	}
	if i := slices.Index(c.Args, "--metrics-addr"); i < 0 || i+1 >= len(c.Args) ||
		!slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
			return strings.HasSuffix(c.Args[i+1], ":"+strconv.Itoa(int(p.ContainerPort)))
		}) {
		t.Errorf("args %q ports %v: the metrics address must be a declared container port", c.Args, c.Ports)
	}
}

// TestSystemdUnit: `systemd-analyze verify` accepts gonetscope.service
// without a warning (it checks every directive, and that the commands
// exist: ExecStart points at a gonetscope built here), and the unit grants
// the capabilities gonetscope checks for.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (package systemd)")
	}
	raw, err := os.ReadFile("gonetscope.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gonetscope")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/gonetscope").CombinedOutput(); err != nil {
		t.Fatalf("building gonetscope: %v\n%s", err, out)
	}
	const installed = "/usr/local/bin/gonetscope"
	unit := string(raw)
	if !strings.Contains(unit, "ExecStart="+installed+" daemon ") {
		t.Fatalf("ExecStart does not run %s daemon", installed)
	}
	path := filepath.Join(dir, "gonetscope.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, installed, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	var ambient []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			ambient = strings.Fields(v)
		}
	}
	for _, c := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"} {
		if !slices.Contains(ambient, c) {
			t.Errorf("AmbientCapabilities %v lacks %s", ambient, c)
		}
	}
}
