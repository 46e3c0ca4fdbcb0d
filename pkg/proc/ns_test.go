package proc

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
)

func TestContainerID(t *testing.T) {
	const id = "3f4e1c0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6"
	for _, tc := range []struct {
		name, cgroup, want string
	}{
		{"docker cgroup v1", "12:memory:/docker/" + id + "\n11:cpu:/docker/" + id + "\n", id},
		{"docker systemd v2", "0::/system.slice/docker-" + id + ".scope\n", id},
		{"containerd kubepods", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-" + id + ".scope\n", id},
		{"cri-o", "0::/kubepods.slice/kubepods-pod99.slice/crio-" + id + ".scope\n", id},
		{"podman", "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope/container\n", id},
		{"kubepods v1", "4:pids:/kubepods/besteffort/pod0f0e/" + id + "\n", id},
		{"host process", "0::/user.slice/user-0.slice/session-3.scope\n", ""},
		{"too short", "0::/docker/3f4e1c0d9b8a\n", ""},
		{"65 digits is not an id", "0::/docker/" + id + "a\n", ""},
		{"empty", "", ""},
	} {
		if got := ContainerID(tc.cgroup); got != tc.want {
			t.Errorf("%s: ContainerID = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestNsIDs(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   []int
		err    bool
	}{
		{"Name:\tx\nNSpid:\t4242\n", []int{4242}, false},
		{"NSpid:\t4242\t17\t1\nNSsid:\t1\n", []int{4242, 17, 1}, false},
		{"Name:\told kernel\n", nil, false},
		{"NSpid:\t4242\tx\n", nil, true},
		{"NSpid:\t0\n", nil, true},
	} {
		got, err := nsIDs([]byte(tc.status), "NSpid:")
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("nsIDs(%q) = %v, %v; want %v, error %v", tc.status, got, err, tc.want, tc.err)
		}
	}
}

// TestReadNamespaces: a child in new PID and network namespaces is seen
// with its host PID first and its own id (1) last, in other namespaces than
// ours; HostTID maps its own thread id back to the host's.
func TestReadNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create namespaces")
	}
	self, err := ReadNamespaces(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.InPIDNamespace() || self.NsPID() != os.Getpid() || self.PID == 0 || self.Net == 0 || self.Mnt == 0 {
		t.Fatalf("our own namespaces: %+v", self)
	}
	if host, err := InHostPIDNamespace(); err != nil || !host {
		t.Fatalf("InHostPIDNamespace = %v, %v; the tests run in the host's", host, err)
	}
	cmd := exec.Command("sleep", "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ns, err := ReadNamespaces(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !ns.InPIDNamespace() || ns.NsPID() != 1 || ns.NSpid[0] != cmd.Process.Pid || ns.PID == self.PID || ns.Net == self.Net || ns.Mnt != self.Mnt {
		t.Errorf("child in new PID and net namespaces: %+v (ours %+v)", ns, self)
	}
	if host, err := HostTID(cmd.Process.Pid, ns, 1); err != nil || host != cmd.Process.Pid {
		t.Errorf("HostTID(1) = %d, %v; want %d", host, err, cmd.Process.Pid)
	}
	if _, err := HostTID(cmd.Process.Pid, ns, 2); err == nil {
		t.Error("HostTID of a thread the child does not have: no error")
	}
}
