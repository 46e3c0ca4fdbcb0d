package bpfobj

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TestAttachFirst drives the fallback with probes that refuse or accept
// without the kernel: an empty spec loads nothing.
func TestAttachFirst(t *testing.T) {
	var tried []string
	probe := func(name string, ok bool) Probe {
		return Probe{Prog: name, Attach: func(*ebpf.Program) (link.Link, error) {
			tried = append(tried, name)
			if !ok {
				return nil, errors.New("no")
			}
			return nil, nil
		}}
	}
	cands := func(fentryOK, kprobeOK bool) []Candidate {
		return []Candidate{
			{Family: HooksFentry, Mechanism: "fexit", Probes: []Probe{probe("f", fentryOK)}},
			{Family: HooksKprobe, Mechanism: "kretprobe", Probes: []Probe{probe("k", kprobeOK)}},
		}
	}
	spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{}, Programs: map[string]*ebpf.ProgramSpec{}}
	for _, tc := range []struct {
		family           string
		fentryOK, kprobe bool
		want, wantErr    string
		wantTried        []string
	}{
		{HooksAuto, true, true, "fexit", "", []string{"f"}},
		{HooksAuto, false, true, "kretprobe", "", []string{"f", "k"}},
		{HooksAuto, false, false, "", "", []string{"f", "k"}},
		{HooksKprobe, true, true, "kretprobe", "", []string{"k"}},
		{HooksTracepoint, true, true, "", "", nil},
		{HooksKprobe, true, false, "", "the kernel refused --hooks=kprobe (kretprobe: attaching k: no); try --hooks=auto", []string{"k"}},
	} {
		tried = nil
		a, err := AttachFirst(spec, nil, cands(tc.fentryOK, tc.kprobe), tc.family)
		got := ""
		if a != nil {
			got = a.Mechanism
		}
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.wantErr || !slices.Equal(tried, tc.wantTried) {
			t.Errorf("%s (fentry %v, kprobe %v): got %q, %q, tried %v; want %q, %q, tried %v",
				tc.family, tc.fentryOK, tc.kprobe, got, gotErr, tried, tc.want, tc.wantErr, tc.wantTried)
		}
	}
}

func TestCheckHooks(t *testing.T) {
	for _, h := range []string{HooksAuto, HooksFentry, HooksKprobe, HooksTracepoint} {
		if err := CheckHooks(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	for _, h := range []string{"", "uprobe", "fexit"} {
		if err := CheckHooks(h); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
}
