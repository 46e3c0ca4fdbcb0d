package proc

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]netip.AddrPort{
		"0100007F:1F90":                         netip.MustParseAddrPort("127.0.0.1:8080"),
		"00000000000000000000000001000000:0050": netip.MustParseAddrPort("[::1]:80"),
		"0000000000000000FFFF00000100007F:01BB": netip.MustParseAddrPort("127.0.0.1:443"), // v4-mapped
	} {
		a, p, err := parseProcAddr(in)
		if err != nil || netip.AddrPortFrom(a, p) != want {
			t.Errorf("%s: %v %d %v, want %v", in, a, p, err, want)
		}
	}
}

// A fake /proc and cgroup tree: the smallest quota on the path counts,
// v2 before v1, and a hierarchy without a limit is no limit.
func TestCPUQuota(t *testing.T) {
	root := t.TempDir()
	oldRoot, oldFS := Root, CgroupFS
	t.Cleanup(func() { Root, CgroupFS = oldRoot, oldFS })
	Root, CgroupFS = filepath.Join(root, "proc"), root
	write := func(path, text string) {
		t.Helper()
		p := filepath.Join(root, path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"+
		"31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
	write("proc/42/cgroup", "3:cpu:/app/web\n0::/app/web\n")
	// v1: 2 CPUs on the parent, 1.5 on the leaf.
	write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
	write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
	write("sys/fs/cgroup/cpu/app/cpu.cfs_quota_us", "200000\n")
	write("sys/fs/cgroup/cpu/app/cpu.cfs_period_us", "100000\n")
	write("sys/fs/cgroup/cpu/app/web/cpu.cfs_quota_us", "150000\n")
	write("sys/fs/cgroup/cpu/app/web/cpu.cfs_period_us", "100000\n")
	cpus, from, limited, err := CPUQuota(42)
	if err != nil || !limited || cpus != 1.5 || from != filepath.Join(root, "sys/fs/cgroup/cpu/app/web/cpu.cfs_quota_us") {
		t.Errorf("v1: %v %q %v %v, want 1.5 from the leaf", cpus, from, limited, err)
	}
	// v2 with the cpu controller: its cpu.max wins; the parent's 0.5 is smallest.
	write("sys/fs/cgroup/unified/app/cpu.max", "50000 100000\n")
	write("sys/fs/cgroup/unified/app/web/cpu.max", "max 100000\n")
	cpus, _, limited, err = CPUQuota(42)
	if err != nil || !limited || cpus != 0.5 {
		t.Errorf("v2: %v %v %v, want 0.5", cpus, limited, err)
	}
	write("sys/fs/cgroup/unified/app/cpu.max", "max 100000\n")
	if _, _, limited, err = CPUQuota(42); err != nil || limited {
		t.Errorf("v2 without a limit: limited %v, %v", limited, err)
	}
}
