package otelmetrics

import (
	"os"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
)

// TestMetricsDocMatchesContract fails when docs/metrics.md and the
// registered contract disagree on any metric's name, kind, value type,
// unit, attributes or description.
func TestMetricsDocMatchesContract(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ kind, value, unit, attrs, desc string }
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
		if len(cells) < 7 {
			t.Fatalf("short table row: %s", line)
		}
		clean := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		name := clean(cells[0])
		if _, dup := doc[name]; dup {
			t.Errorf("%s documented twice", name)
		}
		doc[name] = row{clean(cells[1]), clean(cells[2]), clean(cells[3]), strings.ReplaceAll(strings.TrimSpace(cells[4]), "`", ""), strings.TrimSpace(cells[6])}
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
		if r.kind != string(d.Kind) || r.value != string(d.Value) || r.unit != d.Unit || r.attrs != attrs {
			t.Errorf("%s: doc says %s / %s / %s / %q; code says %s / %s / %s / %q", d.Name, r.kind, r.value, r.unit, r.attrs, d.Kind, d.Value, d.Unit, attrs)
		}
		if r.desc != d.Description {
			t.Errorf("%s: doc describes it as %q; code as %q", d.Name, r.desc, d.Description)
		}
		delete(doc, d.Name)
	}
	for name := range doc {
		if !strings.HasPrefix(name, "workerscope.process.") { // application gauges are documented by pattern
			t.Errorf("%s is in docs/metrics.md but not registered", name)
		}
	}
}

// TestMetricsDocListsEveryAttributeValue fails when an attribute value the
// code can produce is missing from the attribute table of docs/metrics.md.
func TestMetricsDocListsEveryAttributeValue(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	meaning := map[string]string{}
	inAttrs := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			inAttrs = line == "## Attributes"
		}
		if !inAttrs || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		meaning[strings.Trim(strings.TrimSpace(cells[0]), "`")] = cells[len(cells)-1]
	}
	values := map[string][]string{
		attrkey.CPUMode:     {"user", "system"},
		attrkey.FaultType:   {"major", "minor"},
		attrkey.LineReason:  {"invalid", "oversize"},
		attrkey.RPCMethod:   {otherMethod},
		attrkey.ErrorType:   workers.ErrorCodes,
		attrkey.Limit:       workers.LimitNames,
		attrkey.Enforcement: {string(workers.TierCgroup2), string(workers.TierCgroup1), string(workers.TierWatchdog), "none"},
	}
	for _, s := range workers.States {
		values[attrkey.WorkerState] = append(values[attrkey.WorkerState], string(s))
	}
	for _, r := range workers.ExitReasons {
		values[attrkey.ExitReason] = append(values[attrkey.ExitReason], string(r))
	}
	for _, d := range Contract() {
		for _, a := range d.Attributes {
			if _, ok := meaning[a]; !ok {
				t.Errorf("attribute %s of %s is not in the attribute table", a, d.Name)
			}
		}
	}
	for attr, vs := range values {
		for _, v := range vs {
			if !strings.Contains(meaning[attr], "`"+v+"`") {
				t.Errorf("value %q of %s is not documented in docs/metrics.md", v, attr)
			}
		}
	}
}
