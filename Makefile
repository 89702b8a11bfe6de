# Skein: make help lists the targets. Every knob can be overridden:
#   make test GOTESTFLAGS=-v TESTPKGS=./l7proxy/...
GO          ?= go
BIN         ?= bin
VERSION     ?= $(shell git describe --tags --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     ?= -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TESTPKGS    ?= ./...
GOTESTFLAGS ?=
TESTTIMEOUT ?= 40m
# The soak e2e test: 2 minutes in make test, 20 in make soak.
SOAK        ?= 2m
# Each fuzz target runs FUZZTIME in make fuzz, FUZZTESTTIME in make test.
FUZZTIME     ?= 3m
FUZZTESTTIME ?= 8s
BENCHTIME   ?= 1s
BENCHCOUNT  ?= 6
BENCHPKGS   ?= ./...
# The lab part of make bench: BENCHLAB=0 skips it; BENCHARGS go to skein-bench run.
BENCHLAB      ?= 1
BENCHDURATION ?= 4s
BENCHTIMEOUT  ?= 8m
BENCHARGS     ?=
TOPOLOGY    ?= scripts/topologies/demo.yaml
BINARIES    := skein-agent agentctl skein-lab

.DEFAULT_GOAL := help
.PHONY: help deps generate check-generate build test test-unit test-privileged lint fuzz soak bench demo demo-down clean

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install the apt packages the build, tests and demo need (root).
	@scripts/deps.sh

generate: ## Regenerate the BPF bindings (needs clang, libbpf-dev).
	$(GO) generate ./bpf/...

check-generate: generate ## Fail if regenerating the BPF bindings changes anything.
	@git diff --exit-code --stat -- bpf/ || { echo "generated BPF files are stale: run make generate and commit"; exit 1; }

build: ## Build the binaries into $(BIN)/.
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/skein-agent ./cmd/skein-agent
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/agentctl ./cmd/agentctl
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/skein-ca ./cmd/skein-ca
	$(GO) build -o $(BIN)/skein-lab ./scripts/skein-lab

lint: ## go vet, gofmt and the generate-diff check.
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	@$(MAKE) --no-print-directory check-generate

test: deps lint ## Every test; privileged ones run when root (installs missing packages first).
	SKEIN_SOAK=$(SOAK) $(GO) test -timeout $(TESTTIMEOUT) $(GOTESTFLAGS) $(TESTPKGS)
	FUZZTIME=$(FUZZTESTTIME) GO=$(GO) scripts/fuzz.sh

fuzz: ## Run every fuzz target for FUZZTIME each (make fuzz FUZZTIME=5m); failing inputs land in testdata/fuzz.
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

test-unit: ## Unprivileged tests only (no root needed).
	SKEIN_SKIP_PRIVILEGED=1 $(GO) test $(GOTESTFLAGS) $(TESTPKGS)

test-privileged: deps ## Only the privileged tests (eBPF, namespaces); needs root.
	$(GO) test -timeout $(TESTTIMEOUT) -run 'Privileged' $(GOTESTFLAGS) $(TESTPKGS)

soak: deps ## The 20-minute soak (root): steady traffic with route, pod and certificate churn; report in $(BIN)/soak.json.
	@mkdir -p $(BIN)
	cd e2e && SKEIN_SOAK=20m SKEIN_SOAK_REPORT=$(CURDIR)/$(BIN)/soak.json $(GO) test -count=1 -timeout 40m -run 'TestPrivilegedSoak$$' .
	@cat $(BIN)/soak.json

bench: ## Go benchmarks (benchstat input in $(BIN)/bench.txt), then the lab benchmarks (root; JSON + docs/benchmarks.md).
	@mkdir -p $(BIN)
	@status=0; \
	bash -o pipefail -c "$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) $(BENCHPKGS) | tee $(BIN)/bench.txt" || status=$$?; \
	if [ "$(BENCHLAB)" = 1 ]; then \
		scripts/deps.sh && BIN=$(BIN) BENCH_GOBENCH=$(BIN)/bench.txt BENCH_DURATION=$(BENCHDURATION) \
		BENCH_TIMEOUT=$(BENCHTIMEOUT) BENCH_ARGS="$(BENCHARGS)" scripts/bench.sh || status=$$?; \
	fi; exit $$status

demo: deps build ## Bring up a two-node lab, send traffic through the mesh, show what happened.
	scripts/demo.sh $(TOPOLOGY)

demo-down: ## Tear the demo lab down.
	-$(BIN)/skein-lab down

clean: demo-down ## Remove build output.
	rm -rf $(BIN)
