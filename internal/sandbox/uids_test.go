package sandbox

import (
	"errors"
	"strings"
	"testing"
)

func TestParseUIDRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want UIDRange
		err  string
	}{
		{"", UIDRange{}, ""},
		{"200000-200999", UIDRange{200000, 200999}, ""},
		{" 5000 - 5000 ", UIDRange{5000, 5000}, ""},
		{"200000", UIDRange{}, "want FIRST-LAST"},
		{"a-b", UIDRange{}, "two whole numbers"},
		{"-5-10", UIDRange{}, "two whole numbers"},
		{"0-10", UIDRange{}, "uid 0"},
		{"10-4294967295", UIDRange{}, "no uid"},
		{"300-200", UIDRange{}, "reversed"},
		{"100000-300000", UIDRange{}, "more than"},
		{"1-4294967296", UIDRange{}, "two whole numbers"},
	} {
		got, err := ParseUIDRange(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseUIDRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseUIDRange(%q) error = %v; want one mentioning %q", tc.in, err, tc.err)
		}
	}
}

func TestUIDRangeOverlaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b UIDRange
		want bool
	}{
		{UIDRange{10, 20}, UIDRange{20, 30}, true},
		{UIDRange{10, 20}, UIDRange{21, 30}, false},
		{UIDRange{10, 20}, UIDRange{12, 13}, true},
		{UIDRange{10, 20}, UIDRange{}, false},
	} {
		if got := tc.a.Overlaps(tc.b); got != tc.want || tc.b.Overlaps(tc.a) != tc.want {
			t.Errorf("%v overlaps %v = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestUIDPool(t *testing.T) {
	t.Parallel()
	p := NewUIDPool(UIDRange{100, 102})
	var got []uint32
	for range 3 {
		u, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, u)
	}
	if got[0] != 100 || got[1] != 101 || got[2] != 102 {
		t.Fatalf("uids %v, want 100 101 102", got)
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrUIDsExhausted) || !strings.Contains(err.Error(), "100-102") {
		t.Fatalf("exhausted pool: %v", err)
	}
	p.Release(101)
	p.Release(101) // twice: no duplicate
	p.Quarantine(102)
	if u, err := p.Acquire(); err != nil || u != 101 {
		t.Fatalf("after release: %d %v, want 101", u, err)
	}
	if _, err := p.Acquire(); err == nil || !strings.Contains(err.Error(), "1 quarantined") {
		t.Fatalf("a quarantined uid came back: %v", err)
	}
	if n := p.InUse(); n != 2 {
		t.Fatalf("InUse = %d, want 2", n)
	}
}

func TestParsePortsAndMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []uint16
		ok   bool
	}{
		{"", nil, true}, {"none", nil, true}, {"443, 80,443", []uint16{443, 80}, true},
		{"0", nil, false}, {"65536", nil, false}, {"http", nil, false},
	} {
		got, err := ParsePorts(tc.in)
		if (err == nil) != tc.ok || len(got) != len(tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v", tc.in, got, err)
		}
	}
	for in, want := range map[string]Mode{"": ModeOff, "Auto": ModeAuto, "required": ModeRequired, "off": ModeOff} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("strict"); err == nil {
		t.Error("ParseMode(strict) succeeded")
	}
}
