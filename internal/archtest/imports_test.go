package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// mod is the module path; rule patterns name project packages relative
// to it.
const mod = "github.com/workerscope/workerscope/"

// Pattern sets the package comments name in words.
var (
	otel      = []string{"go.opentelemetry.io/..."}
	netHTTP   = []string{"net/http/..."}
	telemetry = []string{mod + "telemetry/..."}
	// the telemetry packages but the attribute keys (telemetry/attrkey)
	otherTelemetry = []string{mod + "telemetry/otelmetrics", mod + "telemetry/otelmetrics/workerseries", mod + "telemetry/otelsetup", mod + "telemetry/oteltrace",
		mod + "telemetry/otellogs", mod + "telemetry/sampler", mod + "telemetry/report", mod + "telemetry/profiling", mod + "telemetry/webui"}
	// "any exporter": the OTel exporters, the gRPC that OTLP rides on and
	// the Prometheus client the Prometheus exporter serves through.
	exporters = []string{"go.opentelemetry.io/otel/exporters/...", "google.golang.org/grpc/...", "github.com/prometheus/client_golang/..."}
	std       = []string{}
)

func cat(sets ...[]string) []string { return slices.Concat(sets...) }

// rule is one promise of a package comment, quoted, and what it means.
type rule struct {
	pkg  string // relative to the module ("" is the root)
	says string // quoted from the package comment (whitespace folded); must still be there
	// deny: patterns ("x/..." is x and everything under it) that must not
	// be in the package's dependency closure.
	deny []string
	// only, when not nil: every dependency outside the standard library
	// must match one of these (std: none may).
	only []string
	// onlyProject, when not nil: every dependency inside the module must
	// match one of these.
	onlyProject []string
	// direct: check the package's own imports, its tests' included,
	// instead of its (non-test) closure.
	direct bool
	// testOnly: no package of the module may import it outside tests
	// (packages that are themselves test-only may).
	testOnly bool
	// noSelector: qualified identifiers ("workers.Manager") the package's
	// non-test files must not use (a promise about a type, not a package).
	noSelector []string
	// none: the sentence names imports but promises nothing checkable
	// (why, in the string).
	none string
}

// rules: each promise of each package comment. The test fails when a quote
// is no longer in its comment (the doc changed: change the rule with it)
// and when a comment has a sentence about imports that no rule quotes (a
// new promise: add its rule). Parsing the English itself would be
// guesswork; a quoted sentence next to its meaning keeps both in one
// reviewable place.
var rules = []rule{
	{pkg: "workers", says: "It must not import OpenTelemetry, net/http or anything under telemetry/",
		deny: cat(otel, netHTTP, telemetry)},
	{pkg: "workers", says: "Its only project imports are its own sub-packages under workers/internal/, internal/procfs, internal/cgroup, internal/proflabel and internal/sandbox",
		onlyProject: []string{mod + "workers", mod + "workers/internal/...", mod + "internal/procfs", mod + "internal/cgroup", mod + "internal/proflabel", mod + "internal/sandbox"}},
	{pkg: "workers/internal/wire", says: "It imports only the standard library and knows nothing of workers.", only: std},
	{pkg: "workers/internal/fanout", says: "It imports only the standard library and knows nothing of workers.", only: std},
	{pkg: "workers/internal/cost", says: "It imports only the standard library and knows nothing of workers.", only: std},
	{pkg: "workers/internal/agentev", says: "It imports only the standard library and knows nothing of workers.", only: std},
	{pkg: "workers/demoworker", says: "It imports only the standard library", only: std},
	{pkg: "telemetry/sampler", says: "must not import OpenTelemetry or net/http", deny: cat(otel, netHTTP)},
	{pkg: "telemetry/otelmetrics", says: "It must not import net/http, the OTel SDK set-up (telemetry/otelsetup) or any exporter",
		deny: cat(netHTTP, []string{mod + "telemetry/otelsetup"}, exporters)},
	{pkg: "telemetry/otelmetrics/workerseries", says: "It must not import the OTel SDK set-up (telemetry/otelsetup) or any exporter",
		deny: cat([]string{mod + "telemetry/otelsetup"}, exporters)},
	{pkg: "telemetry/otelmetrics/workerseries", says: "It reads otelmetrics' measurements (Metrics.MeasureWorkers) and knows nothing else of workers.",
		noSelector: []string{"workers.Manager"}},
	{pkg: "telemetry/oteltrace", says: "it must not import the OTel SDK set-up (telemetry/otelsetup), any exporter, httpapi or the other telemetry packages but the attribute keys (telemetry/attrkey)",
		deny: cat(otherTelemetry, exporters, []string{mod + "httpapi"})},
	{pkg: "telemetry/otellogs", says: "it must not import the OTel SDK set-up (telemetry/otelsetup), any exporter, httpapi or the other telemetry packages but the attribute keys (telemetry/attrkey)",
		deny: cat(otherTelemetry, exporters, []string{mod + "httpapi"})},
	{pkg: "telemetry/attrkey", says: "It is a leaf: it imports nothing.", only: std, direct: true},
	{pkg: "telemetry/otelsetup", says: "It knows nothing of workers or of what is measured",
		deny: []string{mod + "workers/...", mod + "telemetry/sampler", mod + "telemetry/otelmetrics"}},
	{pkg: "telemetry/report", says: "It must not import workers' Manager or httpapi.",
		deny: []string{mod + "httpapi"}, noSelector: []string{"workers.Manager"}},
	{pkg: "telemetry/profiling", says: "It must not import the workers, the sampler or any OTel package.",
		deny: cat(otel, []string{mod + "workers/...", mod + "telemetry/sampler"})},
	{pkg: "telemetry/webui", says: "must not import workers, OpenTelemetry or the other telemetry packages",
		deny: cat(otel, telemetry, []string{mod + "workers/..."})},
	{pkg: "httpapi", says: "must not import OpenTelemetry or anything under telemetry/",
		deny: cat(otel, telemetry)},
	{pkg: "internal/procfs", says: "It imports only the standard library and golang.org/x/sys, and knows nothing of workers, OpenTelemetry or HTTP.",
		only: []string{"golang.org/x/sys/..."}, deny: netHTTP},
	{pkg: "internal/cgroup", says: "It imports only the standard library and golang.org/x/sys, and knows nothing of workers or telemetry.",
		only: []string{"golang.org/x/sys/..."}},
	{pkg: "internal/proflabel", says: "It imports only the standard library, and not net/http,",
		only: std, deny: netHTTP},
	{pkg: "internal/sandbox", says: "The package imports only the standard library, golang.org/x/sys and github.com/landlock-lsm/go-landlock.",
		// psx comes with go-landlock (its all-threads syscalls).
		only: []string{"golang.org/x/sys/...", "github.com/landlock-lsm/go-landlock/...", "kernel.org/pub/linux/libs/security/libcap/psx"}},
	{pkg: "internal/sandbox", says: "It must not import package workers, anything under telemetry/, net/http or OpenTelemetry",
		deny: cat(otel, netHTTP, telemetry, []string{mod + "workers/..."})},
	{pkg: "internal/faillog", says: "It imports only the standard library.", only: std},
	{pkg: "internal/modelstub", says: "It imports only the standard library.", only: std},
	{pkg: "internal/modelstub", says: "It is imported by _test files only.", testOnly: true},
	{pkg: "internal/testutil", says: "It is imported by _test files only.", testOnly: true},
	{pkg: "internal/testutil", says: "It may import internal/procfs and the OTel SDK (an in-memory log exporter), nothing of workers, telemetry or httpapi.",
		deny: cat(telemetry, []string{mod + "httpapi", mod + "workers/..."}), onlyProject: []string{mod + "internal/testutil", mod + "internal/procfs"}},
	{pkg: "workers/workerstest", says: "It is imported by _test files only.", testOnly: true},
	{pkg: "internal/archtest", says: "It imports only the standard library.", only: std, direct: true},
	{pkg: "internal/archtest", says: "Package archtest holds no code, only a test",
		none: "it describes this test"},
	{pkg: "e2e", says: "imports nothing of the project but the metric contract (telemetry/otelmetrics and its attribute keys, telemetry/attrkey)",
		direct: true, onlyProject: []string{mod + "e2e", mod + "telemetry/otelmetrics", mod + "telemetry/attrkey", mod + "telemetry/webui", mod + "internal/modelstub", mod + "deploy/kubernetes/render"}},
	{pkg: "deploy/grafana/gen", says: "It imports the grafana-foundation-sdk only",
		direct: true, only: []string{"github.com/grafana/grafana-foundation-sdk/..."}},
	{pkg: "cmd/workerscope", says: "It is the only place that imports every package",
		none: "a statement of fact about the wiring, not a restriction"},
}

// promise finds the sentences of a package comment that speak of its
// imports.
var promise = regexp.MustCompile(`(?i)\bimport|knows nothing of`)

// platforms: the rules hold wherever the binary is built (make cross).
var platforms = []string{"linux/amd64", "linux/386", "darwin/arm64", "windows/amd64"}

// pkgInfo is what `go list -deps -json` says of one package.
type pkgInfo struct {
	ImportPath, Dir                    string
	Standard                           bool
	Imports, TestImports, XTestImports []string
	Deps                               []string
	GoFiles, CgoFiles                  []string
	Error                              *struct{ Err string }
}

func TestImportRules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root := moduleRoot(t)
	comments := packageComments(t, root)
	checkQuotes(t, comments)
	for _, pl := range platforms {
		t.Run(strings.ReplaceAll(pl, "/", "_"), func(t *testing.T) {
			pkgs := goList(t, root, pl)
			for _, r := range rules {
				if r.none != "" {
					continue
				}
				p, ok := pkgs[mod+r.pkg]
				if !ok {
					if r.pkg == "e2e" && !strings.HasPrefix(pl, "linux/") {
						continue // linux only
					}
					t.Errorf("%s: package %s not listed for %s", r.says, r.pkg, pl)
					continue
				}
				for _, msg := range check(r, p, pkgs) {
					t.Errorf("%s (%s) %s", r.pkg, pl, msg)
				}
			}
		})
	}
}

// check returns what in p breaks r.
func check(r rule, p *pkgInfo, pkgs map[string]*pkgInfo) []string {
	var bad []string
	deps := p.Deps
	if r.direct {
		deps = slices.Concat(p.Imports, p.TestImports, p.XTestImports)
		slices.Sort(deps)
		deps = slices.Compact(deps)
	}
	// violates says why d breaks r, or "" when it does not.
	violates := func(d string) string {
		dp := pkgs[d]
		isStd := dp != nil && dp.Standard || dp == nil && !strings.Contains(strings.SplitN(d, "/", 2)[0], ".")
		switch {
		case d == p.ImportPath || d == "C" || d == "unsafe":
			return ""
		case matchAny(r.deny, d):
			return "which it forbids"
		case r.only != nil && !isStd && !matchAny(r.only, d),
			r.onlyProject != nil && strings.HasPrefix(d, mod) && !matchAny(r.onlyProject, d):
			return "outside what it allows"
		}
		return ""
	}
	for _, d := range deps {
		why := violates(d)
		if why == "" {
			continue
		}
		path := chain(p, d, pkgs, r.direct)
		if slices.ContainsFunc(path[1:len(path)-1], func(q string) bool { return violates(q) != "" }) {
			continue // reported through the package that brought it in
		}
		bad = append(bad, fmt.Sprintf("imports %s, %s (%q): %s", d, why, r.says, strings.Join(path, " → ")))
	}
	if r.testOnly {
		for _, q := range sortedKeys(pkgs) {
			if q != p.ImportPath && strings.HasPrefix(q, mod) && !isTestOnly(q) && slices.Contains(pkgs[q].Deps, p.ImportPath) {
				bad = append(bad, fmt.Sprintf("imported outside tests by %s, which %q forbids: %s", q, r.says, strings.Join(chain(pkgs[q], p.ImportPath, pkgs, false), " → ")))
			}
		}
	}
	for _, sel := range r.noSelector {
		for _, f := range slices.Concat(p.GoFiles, p.CgoFiles) {
			if pos, ok := usesSelector(filepath.Join(p.Dir, f), sel); ok {
				bad = append(bad, fmt.Sprintf("%s uses %s, which %q forbids", pos, sel, r.says))
			}
		}
	}
	return bad
}

// isTestOnly reports whether a rule makes the package test-only.
func isTestOnly(importPath string) bool {
	return slices.ContainsFunc(rules, func(r rule) bool { return r.testOnly && mod+r.pkg == importPath })
}

// chain is the shortest import path from p to dep, both included (for a
// direct rule, p's own import, its tests' included).
func chain(p *pkgInfo, dep string, pkgs map[string]*pkgInfo, direct bool) []string {
	if direct {
		return []string{p.ImportPath, dep}
	}
	prev := map[string]string{p.ImportPath: ""}
	queue := []string{p.ImportPath}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == dep {
			var path []string
			for at := dep; at != ""; at = prev[at] {
				path = append(path, at)
			}
			slices.Reverse(path)
			return path
		}
		if q := pkgs[cur]; q != nil {
			for _, next := range q.Imports {
				if _, seen := prev[next]; !seen {
					prev[next] = cur
					queue = append(queue, next)
				}
			}
		}
	}
	return []string{p.ImportPath, "…", dep}
}

func matchAny(patterns []string, path string) bool {
	for _, pat := range patterns {
		if base, ok := strings.CutSuffix(pat, "/..."); ok {
			if path == base || strings.HasPrefix(path, base+"/") {
				return true
			}
		} else if path == pat {
			return true
		}
	}
	return false
}

// usesSelector reports the first use of sel ("pkg.Name") in file.
func usesSelector(file, sel string) (string, bool) {
	x, name, _ := strings.Cut(sel, ".")
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		return file + ": " + err.Error(), true
	}
	var at string
	ast.Inspect(f, func(n ast.Node) bool {
		if s, ok := n.(*ast.SelectorExpr); ok && at == "" {
			if id, ok := s.X.(*ast.Ident); ok && id.Name == x && s.Sel.Name == name {
				at = fset.Position(s.Pos()).String()
			}
		}
		return at == ""
	})
	return at, at != ""
}

// checkQuotes: every rule's quote is still in its package comment, and
// every sentence of a package comment that speaks of imports is quoted by
// a rule.
func checkQuotes(t *testing.T, comments map[string]string) {
	t.Helper()
	for _, r := range rules {
		c, ok := comments[r.pkg]
		if !ok {
			t.Errorf("rule for %s: no package comment found", r.pkg)
			continue
		}
		if !strings.Contains(c, fold(r.says)) {
			t.Errorf("%s's package comment no longer says %q: update the rule with the doc", r.pkg, r.says)
		}
	}
	for _, pkg := range sortedKeys(comments) {
		for _, s := range sentences(comments[pkg]) {
			if !promise.MatchString(s) {
				continue
			}
			if !slices.ContainsFunc(rules, func(r rule) bool { return r.pkg == pkg && strings.Contains(s, fold(r.says)) }) {
				t.Errorf("%s's package comment promises %q, and no rule in this test checks it: add one", pkg, s)
			}
		}
	}
}

var sentenceEnd = regexp.MustCompile(`[.:;] +([A-Z])`)

// sentences splits folded text after '.', ':' or ';' followed by a capital.
func sentences(text string) []string {
	text = sentenceEnd.ReplaceAllString(text, ".\n$1")
	return strings.Split(text, "\n")
}

func fold(s string) string { return strings.Join(strings.Fields(s), " ") }

// packageComments reads the package comment of every package directory of
// the module (every file's, joined; build tags ignored), keyed by the
// directory relative to the root, whitespace folded.
func packageComments(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "otelcol" && filepath.Base(filepath.Dir(path)) == "deploy") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", path, err)
		}
		if f.Doc == nil {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		out[rel] = strings.TrimSpace(out[rel] + " " + fold(f.Doc.Text()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// goList lists every package of the module and all their dependencies for
// one GOOS/GOARCH, keyed by import path.
func goList(t *testing.T, root, platform string) map[string]*pkgInfo {
	t.Helper()
	goos, goarch, _ := strings.Cut(platform, "/")
	cmd := exec.Command("go", "list", "-e", "-deps", "-test=false", "-json=ImportPath,Dir,Standard,Imports,TestImports,XTestImports,Deps,GoFiles,CgoFiles,Error", "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list for %s: %v\n%s", platform, err, stderr.Bytes())
	}
	pkgs := map[string]*pkgInfo{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkgInfo)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output for %s: %v", platform, err)
		}
		if p.Error != nil && strings.HasPrefix(p.ImportPath, mod) {
			t.Errorf("go list %s (%s): %s", p.ImportPath, platform, p.Error.Err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not in a module")
	}
	return filepath.Dir(gomod)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
