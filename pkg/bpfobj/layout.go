package bpfobj

import (
	"fmt"
	"reflect"
)

// SameLayout reports how a and b, two structs, differ in field names,
// offsets and sizes (blank fields ignored), or nil when they agree. Tests use
// it to hold hand-written mirrors to their bpf2go-generated twins.
func SameLayout(a, b any) error {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta.Size() != tb.Size() {
		return fmt.Errorf("%v is %d bytes, %v is %d", ta, ta.Size(), tb, tb.Size())
	}
	fa, fb := fields(ta), fields(tb)
	if len(fa) != len(fb) {
		return fmt.Errorf("%v has %d fields, %v has %d", ta, len(fa), tb, len(fb))
	}
	for i := range fa {
		if fa[i] != fb[i] {
			return fmt.Errorf("field %d: %v has %+v, %v has %+v", i, ta, fa[i], tb, fb[i])
		}
	}
	return nil
}

type field struct {
	name         string
	offset, size uintptr
}

func fields(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Name == "_" {
			continue
		}
		fs = append(fs, field{f.Name, f.Offset, f.Type.Size()})
	}
	return fs
}
