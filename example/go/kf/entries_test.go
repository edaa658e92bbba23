package kf

import (
	"strings"
	"testing"
)

// Stream entries that kubefuncs did not write become messages marked malformed (the
// runtime dead-letters them), never an error of the read loop.

func entry(fields ...string) any {
	list := make([]any, len(fields))
	for i, f := range fields {
		list[i] = []byte(f)
	}
	return []any{[]byte("1-0"), list}
}

func TestAnEntryWithANumericAttemptCountsIt(t *testing.T) {
	m := entryMessage("s", entry("m", "body", "a", "2"), 1)
	if m.Attempt != 3 || m.Malformed != "" || string(m.Body) != "body" {
		t.Fatalf("%+v", m)
	}
}

func TestABadAttemptFieldMarksTheMessageMalformed(t *testing.T) {
	for _, bad := range []string{"x", "-1", "1e3", "1.5", "", " 1", "99999999999999999999"} {
		m := entryMessage("s", entry("m", "body", "a", bad), 1)
		if !strings.Contains(m.Malformed, "is not an integer") || m.Attempt != 1 {
			t.Errorf("%q: %+v", bad, m)
		}
	}
}

func TestAnEntryWithoutMIsMalformedAndDeletedOnesAreSkipped(t *testing.T) {
	if m := entryMessage("s", entry("x", "y"), 1); m.Malformed != "entry has no m field" {
		t.Fatalf("%+v", m)
	}
	if m := entryMessage("s", entry("m"), 1); m.Malformed != "entry has no m field" {
		t.Fatalf("%+v", m)
	}
	if m := entryMessage("s", []any{[]byte("1-0"), nil}, 1); m != nil {
		t.Fatalf("a deleted entry became %+v", m)
	}
}
