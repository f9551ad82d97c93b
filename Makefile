# workerscope — build, run and test. `make help` lists the targets.
GO       ?= go
# The approved Go for this module (go.mod's toolchain line): the go command fetches it from the
# Go module proxy on first use (76 MB, about 10 s) and every build then recompiles the standard
# library and the module cache once (about 5 minutes on 2 cores). A machine's own Go ignores the
# toolchain line (GOTOOLCHAIN=local in its go.env), so the Makefile exports it; `make
# GOTOOLCHAIN=local` uses the machine's Go.
GOTOOLCHAIN := go1.27.3
export GOTOOLCHAIN
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
PKGS     := ./...
# Prometheus 3 and promtool, for the alert rules' tests and the end-to-end test; built
# once from Go modules into a cache outside the repository.
PROM_VERSION ?= v0.316.0
PROM_BIN ?= $(HOME)/.cache/workerscope/prometheus-$(PROM_VERSION)
PROMETHEUS = $(abspath $(PROM_BIN))/prometheus
PROMTOOL   = $(abspath $(PROM_BIN))/promtool
RULES      = deploy/prometheus/workerscope.rules.yaml
# Jaeger (v2: cmd/jaeger, the all-in-one on the collector core) for the GenAI trace test;
# built once into a cache outside the repository, not by `make test` (docs/performance.md).
JAEGER_VERSION ?= v1.75.0
JAEGER_BIN ?= $(HOME)/.cache/workerscope/jaeger-$(JAEGER_VERSION)
JAEGER      = $(abspath $(JAEGER_BIN))/jaeger
# Generated collector code is not ours to format.
GOFILES   = $(shell find . -name '*.go' -not -path './deploy/otelcol/*' -not -path './.git/*')

.PHONY: lint-deploy lint-dashboard lint-k8s lint-systemd vulncheck kube-score dashboard-linter govulncheck vulndb
.PHONY: help build run test check fmt-check vet cross race fuzz churn soak bench bench-hostmetrics capacity idlemem collector prometheus rules-test demo dashboards k8s-configmaps k8s-router clean jaeger test-jaeger

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

build: ## build bin/workerscope
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/workerscope ./cmd/workerscope

run: build ## run workerscope with the demo worker on 127.0.0.1:7070
	$(BIN)/workerscope $(ARGS)

test: collector prometheus rules-test lint-deploy check ## the test command: builds the collector and Prometheus, then promtool rule tests, the deploy linters (make lint-deploy), gofmt check, go vet, govulncheck, race tests (end-to-end included), short fuzz runs

check: fmt-check vet vulncheck cross race churn fuzz

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# Every platform the binary is built for: macOS and Linux run it; on Windows
# it builds and refuses to start workers with a clear error (docs/configuration.md).
CROSS ?= darwin/amd64 darwin/arm64 linux/amd64 linux/arm64 linux/386 windows/amd64
cross: ## cross-compile every package for every supported platform
	@for t in $(CROSS); do echo "build $$t"; GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null $(PKGS) || exit 1; done

race:
	WORKERSCOPE_OTELCOL=$(CURDIR)/$(BIN)/otelcol WORKERSCOPE_PROMETHEUS=$(PROMETHEUS) WORKERSCOPE_PROMTOOL=$(PROMTOOL) \
		$(GO) test -race -count=1 -timeout 20m $(PKGS)

churn: ## 10,000 spawn/exit cycles, then no leaked goroutines, fds, caches, series or processes (without -race: it slows every worker)
	$(GO) test -count=1 -timeout 20m -run '^TestChurnLeavesNothingBehind$$' -v ./telemetry/otelmetrics

# Not part of `make test`: it runs for minutes. -count=1: never a cached result,
# the run is what writes docs/reliability.md.
soak: collector ## the fault suite (~2 min): hostile loads against the real binary, figures and bounds to docs/reliability.md (WORKERSCOPE_SOAK_SCALE=4 for a longer run)
	WORKERSCOPE_SOAK=1 WORKERSCOPE_E2E=required WORKERSCOPE_OTELCOL=$(CURDIR)/$(BIN)/otelcol $(GO) test -count=1 -run '^TestSoak' -timeout 30m -v ./e2e

# Budgets in executions, about 5 s each on 2 cores: a duration (-fuzztime 5s)
# races Go 1.26's fuzz coordinator at the deadline on a loaded machine and
# fails with a bare "context deadline exceeded" and no crasher
# (go.dev/issue/75804, fixed in Go 1.27). FUZZX=10 runs ten times as long.
FUZZX ?= 1
fuzz: ## short fuzz runs of the line protocol, command and /proc parsers
	$(GO) test -run '^$$' -fuzz '^FuzzLineReader$$' -fuzztime $$((25000*$(FUZZX)))x ./workers/internal/wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $$((50000*$(FUZZX)))x ./workers/internal/wire
	$(GO) test -run '^$$' -fuzz '^FuzzAgentLine$$' -fuzztime $$((25000*$(FUZZX)))x ./workers
	$(GO) test -run '^$$' -fuzz '^FuzzParseStat$$' -fuzztime $$((250000*$(FUZZX)))x ./internal/procfs

BENCHCOUNT ?= 1
bench: ## benchmarks: sampler vs the raw /proc baseline, spawn latency and throughput (against the collector's hostmetrics process scraper: make bench-hostmetrics)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./telemetry/... ./workers

# The collector's hostmetrics process scraper and workerscope's export cycle on the same idle
# workers, in alternating phases (docs/performance.md). A module of its own, bench/hostmetrics,
# so the collector's dependencies stay out of go.mod; not in `make test`. Its first build
# compiles the collector's receiver and gopsutil (about 2 minutes on 2 loaded cores).
# HOSTBENCH_ROUNDS phases of each side per pool size; WORKERSCOPE_HOSTBENCH_N=1000 (a comma
# list) chooses the sizes, WORKERSCOPE_HOSTBENCH_CYCLES the scrapes per phase.
HOSTBENCH_ROUNDS ?= 5
bench-hostmetrics: ## the collector's hostmetrics process scraper vs workerscope's export cycle, CPU per worker, N = 100, 300, 1000 (≈ 1 min, plus a 2 min first build; not in make test)
	cd bench/hostmetrics && $(GO) test -run '^$$' -bench . -benchtime $(HOSTBENCH_ROUNDS)x -count $(BENCHCOUNT) -timeout 30m .

capacity: collector ## ramp live demo workers (100…2000) and measure what limits one host first (minutes, most of the machine; not in make test)
	WORKERSCOPE_CAPACITY=1 WORKERSCOPE_OTELCOL=$(CURDIR)/$(BIN)/otelcol \
		$(GO) test -count=1 -timeout 30m -run '^TestCapacityRamp$$' -v ./e2e
	$(GO) test -run '^$$' -bench '^BenchmarkExportCycleRamp$$' -benchtime 5x ./telemetry/otelmetrics

idlemem: collector ## supervisor RSS per idle worker: the real binary with 1,000 idle demo workers, with and without telemetry (minutes; not in make test; docs/scaling.md)
	WORKERSCOPE_IDLEMEM=1 WORKERSCOPE_OTELCOL=$(CURDIR)/$(BIN)/otelcol \
		$(GO) test -count=1 -timeout 30m -run '^TestIdleWorkersRSS$$' -v ./e2e
	$(GO) test -run '^$$' -bench '^BenchmarkIdleWorkerMemory$$' -benchtime 1x ./workers

collector: $(BIN)/otelcol ## build the OpenTelemetry Collector from deploy/otelcol

$(BIN)/otelcol: deploy/otelcol/go.mod deploy/otelcol/go.sum $(wildcard deploy/otelcol/*.go)
	cd deploy/otelcol && $(GO) build -trimpath -o ../../$(BIN)/otelcol .

# `go install pkg@version` builds outside this module; -mod=mod and GOWORK=off keep the
# caller's GOFLAGS and workspace out of it. About 10 minutes on 2 cores when cold.
prometheus: ## build Prometheus and promtool (once) into ~/.cache/workerscope/prometheus-<version> (PROM_BIN)
	@if [ -x $(PROMETHEUS) ] && [ -x $(PROMTOOL) ]; then exit 0; fi; \
	echo "building Prometheus $(PROM_VERSION) into $(PROM_BIN) (takes minutes)"; \
	mkdir -p $(abspath $(PROM_BIN)) && cd /tmp && GOWORK=off GOFLAGS=-mod=mod GOBIN=$(abspath $(PROM_BIN)) \
		$(GO) install github.com/prometheus/prometheus/cmd/prometheus@$(PROM_VERSION) \
			github.com/prometheus/prometheus/cmd/promtool@$(PROM_VERSION)

# Jaeger's go.mod has a replace directive, so `go install pkg@version` refuses it: build
# it from a scratch module that requires it and repeats the replace. About 13 CPU-minutes
# cold (7–10 minutes on 2 idle cores; 20 on a loaded one), most of it compiling the collector.
jaeger: ## build Jaeger v2 (cmd/jaeger of module v1.75.0) once into ~/.cache/workerscope/jaeger-<version> (JAEGER_BIN)
	@if [ -x $(JAEGER) ]; then exit 0; fi; \
	echo "building Jaeger $(JAEGER_VERSION) into $(JAEGER_BIN) (takes minutes)"; \
	dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && cd "$$dir" && \
	printf 'module jaegerbuild\n\ngo 1.25.3\n\nrequire github.com/jaegertracing/jaeger $(JAEGER_VERSION)\n\nreplace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0\n' > go.mod && \
	GOWORK=off GOFLAGS=-mod=mod $(GO) get github.com/jaegertracing/jaeger/cmd/jaeger@$(JAEGER_VERSION) && \
	mkdir -p $(abspath $(JAEGER_BIN)) && \
	GOWORK=off GOFLAGS=-mod=mod $(GO) build -trimpath -o $(JAEGER).tmp github.com/jaegertracing/jaeger/cmd/jaeger && \
	mv $(JAEGER).tmp $(JAEGER)

test-jaeger: collector jaeger ## the GenAI trace end to end: the real pi, the collector and Jaeger (e2e TestJaeger*)
	WORKERSCOPE_JAEGER_TEST=required WORKERSCOPE_JAEGER=$(JAEGER) WORKERSCOPE_OTELCOL=$(CURDIR)/$(BIN)/otelcol \
		$(GO) test -race -count=1 -timeout 10m -run '^TestJaeger' -v ./e2e

# The field's own linters on the deploy files (docs/deploy-linters.md), each built once per
# machine into ~/.cache/workerscope/<tool>-<version> like Prometheus:
#   dashboard-linter  deploy/grafana/workerscope.json, with deploy/grafana/.lint (its config:
#                     the suppressed rules and why)
#   kube-score        the kustomization of deploy/kubernetes and each overlay, rendered by
#                     deploy/kubernetes/kustomize (the tests' renderer); deploy/kubernetes/.kube-score
#                     lists the checks left out and why
#   systemd-analyze   security --offline of deploy/systemd/*.service: exposure ≤ 3.0
# `make check` also runs govulncheck against a database built offline from golang.org/x/vulndb.
LINT_CACHE := $(HOME)/.cache/workerscope
# grafana/dashboard-linter is not served by the module proxy: third_party/dashboard-linter is a
# copy of its source at commit 1be3836 (before the Grafana v2 schema support) without the LogQL
# rules (their parser is Loki's AGPL module) and on the flag package (WORKERSCOPE.md there).
# Bump the suffix when the copy changes.
DASHLINT_VERSION ?= 1be3836-2
DASHLINT = $(LINT_CACHE)/dashboard-linter-$(DASHLINT_VERSION)/dashboard-linter
KUBE_SCORE_VERSION ?= v1.20.0
KUBE_SCORE = $(LINT_CACHE)/kube-score-$(KUBE_SCORE_VERSION)/kube-score
GOVULNCHECK_VERSION ?= v1.9.0
# Built with the module's Go: its type checker must read every file the build does.
GOVULNCHECK = $(LINT_CACHE)/govulncheck-$(GOVULNCHECK_VERSION)-$(GOTOOLCHAIN)/govulncheck
# The vulnerability database: data/osv/*.json of this golang.org/x/vulndb module version, indexed
# by vulndb's own cmd/indexdb into index/ and ID/ (what `govulncheck -db file://` reads).
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB = $(LINT_CACHE)/vulndb-$(VULNDB_VERSION)
KUBE_TARGETS = deploy/kubernetes deploy/kubernetes/overlays/scale-5
SYSTEMD_UNITS = $(wildcard deploy/systemd/*.service)
# 30 is an exposure of 3.0 (systemd-analyze's scale is 0–100 here).
SYSTEMD_EXPOSURE_MAX ?= 30

lint-deploy: lint-dashboard lint-k8s lint-systemd ## the field's linters on deploy/: dashboard-linter, kube-score, systemd-analyze security (tools built once into ~/.cache/workerscope)

lint-dashboard: dashboard-linter
	$(DASHLINT) lint --strict --config deploy/grafana/.lint deploy/grafana/workerscope.json

lint-k8s: kube-score
	@set -e; out=$$(mktemp); trap 'rm -f "$$out"' EXIT; for t in $(KUBE_TARGETS); do \
		echo "kube-score $$t"; $(GO) run ./deploy/kubernetes/kustomize $$t > "$$out"; \
		$(KUBE_SCORE) score --output-format ci $$(sed 's/#.*//' deploy/kubernetes/.kube-score) "$$out"; done

lint-systemd:
	systemd-analyze security --offline=true --threshold=$(SYSTEMD_EXPOSURE_MAX) $(SYSTEMD_UNITS)

vulncheck: govulncheck vulndb ## govulncheck ./... against the offline database; fails on a called vulnerability
	$(GOVULNCHECK) -db file://$(VULNDB) ./...

dashboard-linter:
	@if [ -x $(DASHLINT) ]; then exit 0; fi; \
	echo "building dashboard-linter $(DASHLINT_VERSION) into $(dir $(DASHLINT)) (about a minute cold)"; \
	mkdir -p $(dir $(DASHLINT)) && cd third_party/dashboard-linter && \
	GOWORK=off GOFLAGS=-mod=mod $(GO) build -trimpath -o $(DASHLINT).tmp . && mv $(DASHLINT).tmp $(DASHLINT)

kube-score:
	@if [ -x $(KUBE_SCORE) ]; then exit 0; fi; \
	echo "building kube-score $(KUBE_SCORE_VERSION) into $(dir $(KUBE_SCORE))"; \
	mkdir -p $(dir $(KUBE_SCORE)) && cd /tmp && GOWORK=off GOFLAGS=-mod=mod GOBIN=$(dir $(KUBE_SCORE)) \
		$(GO) install github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)

govulncheck:
	@if [ -x $(GOVULNCHECK) ]; then exit 0; fi; \
	echo "building govulncheck $(GOVULNCHECK_VERSION) into $(dir $(GOVULNCHECK))"; \
	mkdir -p $(dir $(GOVULNCHECK)) && cd /tmp && GOWORK=off GOFLAGS=-mod=mod GOBIN=$(dir $(GOVULNCHECK)) \
		$(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

vulndb:
	@if [ -f $(VULNDB)/index/db.json ]; then exit 0; fi; \
	echo "building the vulnerability database from golang.org/x/vulndb@$(VULNDB_VERSION) into $(VULNDB)"; \
	set -e; cd /tmp; mkdir -p $(VULNDB).tmp; \
	GOWORK=off GOFLAGS=-mod=mod GOBIN=$(VULNDB).tmp $(GO) install golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION); \
	src=$$(GOWORK=off GOFLAGS=-mod=mod $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	rm -rf $(VULNDB).tmp/db; $(VULNDB).tmp/indexdb -vulns "$$src/data/osv" -out $(VULNDB).tmp/db; \
	rm -rf $(VULNDB); mv $(VULNDB).tmp/db $(VULNDB); rm -rf $(VULNDB).tmp

rules-test: prometheus ## promtool: check the alert rules and run their unit tests
	$(PROMTOOL) check rules $(RULES) deploy/prometheus/testdata/*.rules.yaml
	$(PROMTOOL) test rules deploy/prometheus/workerscope.rules.test.yaml

demo: build collector prometheus ## Prometheus (alert rules, http://127.0.0.1:9090/alerts) + collector + workerscope + demo workers under load
	PROMETHEUS=$(PROMETHEUS) deploy/demo.sh $(ARGS)

dashboards: ## regenerate deploy/grafana/workerscope.json from deploy/grafana/gen (commit the result)
	$(GO) run ./deploy/grafana/gen -o deploy/grafana/workerscope.json

k8s-configmaps: ## regenerate deploy/kubernetes/base/configmaps.yaml from the collector configs in deploy/ (commit the result)
	deploy/kubernetes/gen-configmaps.sh

k8s-router: ## render deploy/nginx/workerscope.conf.tmpl into deploy/nginx/workerscope.conf and each kustomization's router config (commit the result)
	$(GO) run ./deploy/kubernetes/gen-router

clean:
	rm -rf $(BIN)
