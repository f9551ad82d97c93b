package workers_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/workers"
)

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"512MiB", 512 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"2gib", 2 << 30, ""},
		{"1.5G", 3 << 29, ""},
		{"100k", 100 << 10, ""},
		{" 64 MiB ", 64 << 20, ""},
		{"1TiB", 1 << 40, ""},
		{"", 0, "empty"},
		{"abc", 0, "want a number"},
		{"-1", 0, "want a number"},
		{"-512MiB", 0, "want a number"},
		{"1.5.3GiB", 0, "bad number"},
		{"12XB", 0, "unknown unit"},
		{"99999999999999999999", 0, "too large"},
		{"9000000TiB", 0, "too large"},
		{"9000000.5TiB", 0, "too large"},
	} {
		got, err := workers.ParseByteSize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseByteSize(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestFormatByteSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0B", 512 << 20: "512MiB", 3 << 29: "1.5GiB", 1000: "1000B"} {
		if got := workers.FormatByteSize(in); got != want {
			t.Errorf("FormatByteSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCPUCores(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.5", 0.5, true}, {"2", 2, true}, {"0", 0, true}, {" 1.25 ", 1.25, true},
		{"-1", 0, false}, {"0.001", 0, false}, {"abc", 0, false}, {"NaN", 0, false},
		{"Inf", 0, false}, {"1e300", 0, false}, {"", 0, false}, {"1.5.3", 0, false},
	} {
		got, err := workers.ParseCPUCores(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCPUCores(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseCPUCores(%q): error %q does not quote the input", tc.in, err)
		}
	}
}

func TestParsePidsMax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"40", 40, true}, {"0", 0, true}, {"-1", 0, false}, {"4.5", 0, false}, {"abc", 0, false},
		{"99999999999", 0, false}, {"99999999999999999999999", 0, false},
	} {
		got, err := workers.ParsePidsMax(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePidsMax(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseCgroupMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want workers.CgroupMode
		ok   bool
	}{
		{"auto", workers.CgroupsAuto, true}, {"OFF", workers.CgroupsOff, true},
		{"required", workers.CgroupsRequired, true}, {"", "", false}, {"on", "", false},
	} {
		got, err := workers.ParseCgroupMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCgroupMode(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestConfigRejectsBadLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*workers.Config)
		want string
	}{
		{"negative memory", func(c *workers.Config) { c.MemoryMax = -1 }, "MemoryMax"},
		{"tiny memory", func(c *workers.Config) { c.MemoryMax = 100 }, "MemoryMax"},
		{"negative pids", func(c *workers.Config) { c.PidsMax = -5 }, "PidsMax"},
		{"negative cpu", func(c *workers.Config) { c.CPUMax = -0.5 }, "CPUMax"},
		{"nan cpu", func(c *workers.Config) { c.CPUMax = math.NaN() }, "CPUMax"},
		{"huge cpu", func(c *workers.Config) { c.CPUMax = 1e12 }, "CPUMax"},
		{"bad mode", func(c *workers.Config) { c.Cgroups = "sometimes" }, "Cgroups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := workers.Config{Command: []string{"true"}, RuntimeDir: "-"}
			tc.mod(&cfg)
			_, err := workers.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestExitErrorCarriesLimit(t *testing.T) {
	t.Parallel()
	err := error(&workers.ExitError{WorkerID: "w1-1", Key: "k", Reason: workers.ExitMemoryLimit, Status: "signal: terminated",
		Limit: &workers.LimitError{Limit: workers.LimitMemory, Max: 512 << 20, Used: 600 << 20, By: "watchdog"}})
	if !errors.Is(err, workers.ErrWorkerExit) || !errors.Is(err, workers.ErrLimitExceeded) {
		t.Fatalf("errors.Is failed for %v", err)
	}
	if !strings.Contains(err.Error(), "memory limit 512MiB exceeded (tree at 600MiB)") {
		t.Fatalf("message %q", err)
	}
	plain := error(&workers.ExitError{Reason: workers.ExitCrashed})
	if errors.Is(plain, workers.ErrLimitExceeded) {
		t.Fatal("a crash matched ErrLimitExceeded")
	}
}

// TestValidateNamesFields: Validate reports every invalid field at once,
// each a *ConfigError naming its Config field, as New does.
func TestValidateNamesFields(t *testing.T) {
	t.Parallel()
	cfg := workers.Config{Command: []string{"x"}, MemoryMax: 100, MaxLineBytes: 10, PidsMax: -1}
	err := cfg.Validate()
	got := map[string]bool{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *workers.ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a ConfigError", e)
		}
		got[ce.Field] = true
	}
	for _, f := range []string{"MemoryMax", "MaxLineBytes", "PidsMax"} {
		if !got[f] {
			t.Errorf("no error for %s in %v", f, err)
		}
	}
	if _, err := workers.New(cfg); err == nil || !strings.Contains(err.Error(), "workers: MemoryMax: must be 0 or ≥ 1MiB") {
		t.Errorf("New: %v", err)
	}
	if err := (workers.Config{Command: []string{"x"}}).Validate(); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}
