package bpfobj

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Hist is one entry of a `hists` map (bpf/hist.h): a log2 histogram of
// durations, or a counter (Count only), for one set of labels.
type Hist struct {
	PID    uint32
	Metric string // the enum hist_metric name, lowercase without the prefix: "netpoll_wait"
	Mode   string // netpoll mode ("read", ...), or ""
	Port   uint16 // listener port, or 0
	Result int32  // errno, or 0
	Count  uint64
	SumNs  uint64
	// Buckets[i] counts values v with 2^i <= v < 2^(i+1) ns (bucket 0 also 0 and 1).
	Buckets []uint64
}

// ReadHists reads every entry of a `hists` map with its bpf2go-generated
// key and value types K and V, converted by conv (to a Hist, or to more
// than one where an entry holds several). Entries whose PID keep rejects
// are deleted instead: their process is no longer traced.
func ReadHists[K, V, H any](m *ebpf.Map, pid func(*K) uint32, keep func(uint32) bool, conv func(*K, *V) H) ([]H, error) {
	var (
		k     K
		v     V
		out   []H
		stale []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !keep(pid(&k)) {
			stale = append(stale, k)
			continue
		}
		out = append(out, conv(&k, &v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading histograms: %w", err)
	}
	if err := deleteKeys(m, stale); err != nil {
		return nil, fmt.Errorf("deleting histograms of an untraced process: %w", err)
	}
	return out, nil
}

// DeleteWhere deletes the entries of m, with its bpf2go-generated key and
// value types K and V, whose key drop matches (the entries of a process no
// longer traced, say).
func DeleteWhere[K, V any](m *ebpf.Map, drop func(*K) bool) error {
	return DeleteEntriesWhere(m, func(k *K, _ *V) bool { return drop(k) })
}

// DeleteEntriesWhere is DeleteWhere by key and value.
func DeleteEntriesWhere[K, V any](m *ebpf.Map, drop func(*K, *V) bool) error {
	var (
		k    K
		v    V
		dead []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if drop(&k, &v) {
			dead = append(dead, k)
		}
	}
	// What was found goes even if the iteration broke off.
	return errors.Join(it.Err(), deleteKeys(m, dead))
}

// deleteKeys deletes keys from m; one already gone is no error.
func deleteKeys[K any](m *ebpf.Map, keys []K) error {
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// ReadStack reads one stack of a BPF_MAP_TYPE_STACK_TRACE map, leaf first,
// without the zero padding.
func ReadStack(m *ebpf.Map, id int32) ([]uint64, error) {
	if id < 0 {
		return nil, errors.New("no stack")
	}
	pcs := make([]uint64, m.ValueSize()/8)
	if err := m.Lookup(uint32(id), pcs); err != nil {
		return nil, err
	}
	n := 0
	for n < len(pcs) && pcs[n] != 0 {
		n++
	}
	return pcs[:n], nil
}
