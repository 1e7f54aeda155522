# podpreset: run `make help` for the targets.
#
# `make test` and `make verify` never rewrite the tree: generated files and
# golden files are rewritten only by `make generate manifests` and
# `make golden`, and reviewed in the diff.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

GO      ?= go
BIN     := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint
PROMTOOL       := $(BIN)/promtool
# No DWARF from the compiler: nothing here reads it (stack traces, race
# reports and profiles use the symbol table, which stays), and compiling
# without it costs about 13% less CPU, which a cold make test spends mostly
# on compiling (measured on etcd's build: 101 s user CPU with, 87 s without).
# Set GOFLAGS=-buildvcs=false for a debugger's build.
export GOFLAGS ?= -buildvcs=false -gcflags=all=-dwarf=false

# The image: make image, make image-push IMG=registry/name:tag.
ARCH      ?= $(shell $(GO) env GOARCH)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  := $(shell git rev-parse HEAD 2>/dev/null)
CREATED   := $(shell git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
IMAGE_REF ?= podpreset.local/podpreset-webhook:$(VERSION)
IMAGE_OUT := $(CURDIR)/_output/image

# Where controller-gen reads markers and writes CRDs, RBAC and webhook
# configurations.
API_PATHS := ./presets/...
GEN_PATHS := ./presets/...;./cmd/...
GENERATED := manifests/crd manifests/rbac/role.yaml manifests/webhook/manifests.yaml
# The Helm chart's crds/ are the generated CRDs, copied (Helm installs
# them from there; manifests/chart_test.go checks they are the same).
MANIFESTS_GEN = $(CONTROLLER_GEN) crd rbac:roleName=webhook webhook paths="$(GEN_PATHS)" \
	output:crd:artifacts:config=manifests/crd output:rbac:artifacts:config=manifests/rbac \
	output:webhook:artifacts:config=manifests/webhook && \
	cp manifests/crd/podpreset.dev_*.yaml manifests/helm/podpreset/crds/ && \
	$(GO) run ./hack/monitoring

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build podpreset's binaries into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: image
image: ## Build the webhook image without Docker into _output/image (OCI layout and docker-save tarball).
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
	  -o $(BIN)/linux_$(ARCH)/podpreset-webhook ./cmd/podpreset-webhook
	$(GO) run ./hack/image webhook --binary $(BIN)/linux_$(ARCH)/podpreset-webhook --version $(VERSION) \
	  --revision $(REVISION) --created $(CREATED) --arch $(ARCH) --ref $(IMAGE_REF) --out $(IMAGE_OUT)

.PHONY: image-push
image-push: image ## Push the image to IMG=registry/name:tag (credentials from docker login).
	@test -n "$(IMG)" || { echo "make image-push IMG=registry/name:tag"; exit 1; }
	$(GO) run ./hack/image push --layout $(IMAGE_OUT)/oci --to $(IMG)

.PHONY: dist
dist: ## Release artifacts into _output/dist for VERSION=vX.Y.Z: the CLI's archives for linux, darwin and windows (amd64, arm64), SHA256SUMS, a krew manifest, the install bundle podpreset.yaml (image pinned by digest after make image) and the chart.
	@case "$(VERSION)" in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "make dist VERSION=vX.Y.Z (not $(VERSION))"; exit 1;; esac
	rm -rf _output/dist
	$(GO) run ./hack/dist --version $(VERSION) --out _output/dist

.PHONY: servers
servers: ## Build etcd, the Kubernetes servers and kubelet, Consul, Vault, containerd, runc and CNI into bin/ (once).
	hack/build-servers.sh

.PHONY: test
test: ## Run every test: unit, handler, golden CLI, fuzz seeds, the alert rules and the chart under Helm 4 (while the servers build), e2e on a real control plane, and the node tier (root).
	$(MAKE) --no-print-directory -j2 --output-sync=target test-unit servers test-monitoring test-helm4
	$(MAKE) --no-print-directory test-e2e
	$(MAKE) --no-print-directory test-node

.PHONY: test-unit
test-unit: ## Unit, handler, golden CLI and fuzz-seed tests, with the race detector; they need no server.
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v -e /test/e2e -e /test/node -e /test/bench)

.PHONY: test-helm4
test-helm4: ## The Helm chart under Helm 4's SDK: lint, and the same objects as Helm 3 (a module of its own, hack/helm4).
	cd hack/helm4 && $(GO) test -count=1 ./...

.PHONY: test-monitoring
test-monitoring: $(PROMTOOL) ## The alert rules (manifests/monitoring): promtool check rules and promtool's rule tests.
	$(PROMTOOL) check rules manifests/monitoring/rules.yaml
	$(PROMTOOL) test rules manifests/monitoring/tests/*.yaml

# promtool, pinned in hack/promtool, without Prometheus' service discoveries
# (a third of the build).
$(PROMTOOL): hack/promtool/go.mod
	cd hack/promtool && $(GO) build -tags remove_all_sd -o $(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool

.PHONY: test-e2e
test-e2e: servers ## The e2e tests: a real control plane, Consul and Vault, the webhook as a process.
	$(GO) test -count=1 -timeout 20m ./test/e2e/...

.PHONY: test-node
test-node: servers ## The node tier (root): podpreset installed from its image on a kubelet node.
	$(GO) test -count=1 -timeout 20m ./test/node/...

.PHONY: bench
bench: servers ## Run the benchmarks: engine, handler, admission through the API server beside its baselines, webhook RSS and the pod inventory at 10,000 pods.
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./presets/...
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./webhook/...
	$(MAKE) --no-print-directory bench-e2e
	$(GO) test -run '^$$' -bench . -skip Inventory10kPods -benchtime 300x ./test/e2e/...
	$(GO) test -run '^$$' -bench Inventory10kPods -benchtime 1x ./test/e2e/...

.PHONY: bench-e2e
bench-e2e: servers ## Admission through a real API server: no webhook, a do-nothing webhook, podpreset, the pre-merged pod, a one-annotation webhook, the compiled policy; interleaved (about 10 minutes).
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench Admission -benchtime 1x ./test/bench/... $(BENCHFLAGS)

.PHONY: bench-peers
bench-peers: servers ## Kyverno beside podpreset on one control plane (builds Kyverno from the module proxy once first, a long build: 28 minutes here beside other work; the benchmark then takes under 2 minutes; never part of make test).
	hack/peers/build-kyverno.sh
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench Peers -benchtime 1x ./test/bench/...

.PHONY: fuzz
fuzz: ## Fuzz the engine and the admission handlers, FUZZTIME each (default 60s).
	$(GO) test -run '^$$' -fuzz FuzzApply -fuzztime $(or $(FUZZTIME),60s) ./presets
	$(GO) test -run '^$$' -fuzz FuzzPodMutator -fuzztime $(or $(FUZZTIME),60s) ./webhook
	$(GO) test -run '^$$' -fuzz FuzzPresetValidator -fuzztime $(or $(FUZZTIME),60s) ./webhook
	$(GO) test -run '^$$' -fuzz FuzzScanSpec -fuzztime $(or $(FUZZTIME),60s) ./presets
	$(GO) test -run '^$$' -fuzz FuzzDecodeReadsWhatTheAPIServerReads -fuzztime $(or $(FUZZTIME),60s) ./webhook

.PHONY: golden
golden: ## Rewrite the golden files of the CLI and handler tests, and the engine's cases for the policy test (review the diff!).
	$(GO) test ./cmd/kubectl-podpreset ./webhook -update
	$(GO) test ./presets -run EngineCasesFile -update-engine-cases

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object paths=$(API_PATHS)

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs, RBAC and webhook configurations from markers.
	$(MANIFESTS_GEN)

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned in hack/lint; the linters are in .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: $(CONTROLLER_GEN) $(GOLANGCI_LINT) ## Fail on gofmt, go vet, golangci-lint, go mod tidy or generated-file drift.
	@echo "verify: gofmt"; out=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "verify: go vet"; $(GO) vet ./...
	@echo "verify: golangci-lint"; $(GOLANGCI_LINT) run ./...
	@echo "verify: go mod tidy"; $(GO) mod tidy -diff
	@echo "verify: go mod tidy (hack/tools)"; cd hack/tools && $(GO) mod tidy -diff
	@echo "verify: go mod tidy (hack/lint)"; cd hack/lint && $(GO) mod tidy -diff
	@echo "verify: go mod tidy (hack/promtool)"; cd hack/promtool && $(GO) mod tidy -diff
	@echo "verify: go mod tidy (hack/helm4)"; cd hack/helm4 && $(GO) mod tidy -diff
	@echo "verify: generated files"; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  tar --exclude=./bin --exclude=./.git -cf - . | tar -C "$$tmp" -xf -; \
	  (cd "$$tmp" && $(CONTROLLER_GEN) object paths=$(API_PATHS) && $(MANIFESTS_GEN)); \
	  if ! diff -ru presets "$$tmp/presets" || ! diff -ru manifests "$$tmp/manifests"; then \
	    echo "generated files are out of date: run 'make generate manifests' and commit"; exit 1; fi
	@echo "verify: ok"

.PHONY: run
run: servers ## Run the webhook on a local control plane with the examples, until Ctrl-C.
	$(GO) run ./hack/localrun --node=$(if $(filter 0,$(NODE)),false,true)

$(CONTROLLER_GEN): hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && $(GO) build -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen

$(GOLANGCI_LINT): hack/lint/go.mod hack/lint/go.sum
	cd hack/lint && $(GO) build -o $(GOLANGCI_LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint
