package telemetry

import (
	"os"
	"strings"
	"testing"
)

// TestMetricsDocMatchesContract fails when docs/metrics.md and the
// registered contract disagree on any metric's name, kind, unit or
// attributes.
func TestMetricsDocMatchesContract(t *testing.T) {
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ kind, unit, attrs string }
	doc := map[string]row{}
	inContract := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			inContract = line == "## The contract"
		}
		if !inContract || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 5 {
			t.Fatalf("short table row: %s", line)
		}
		clean := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		name := clean(cells[0])
		if _, dup := doc[name]; dup {
			t.Errorf("%s documented twice", name)
		}
		doc[name] = row{clean(cells[1]), clean(cells[2]), strings.ReplaceAll(strings.TrimSpace(cells[3]), "`", "")}
	}
	for _, d := range Contract() {
		r, ok := doc[d.Name]
		if !ok {
			t.Errorf("%s is registered but not in docs/metrics.md", d.Name)
			continue
		}
		attrs := strings.Join(d.Attributes, ", ")
		if attrs == "" {
			attrs = "—"
		}
		if r.kind != string(d.Kind) || r.unit != d.Unit || r.attrs != attrs {
			t.Errorf("%s: doc says %s / %s / %q; code says %s / %s / %q", d.Name, r.kind, r.unit, r.attrs, d.Kind, d.Unit, attrs)
		}
		delete(doc, d.Name)
	}
	for name := range doc {
		if !strings.HasPrefix(name, "workerscope.process.") { // application gauges are documented by pattern
			t.Errorf("%s is in docs/metrics.md but not registered", name)
		}
	}
}
