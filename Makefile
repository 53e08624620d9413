# cluster-proxy. `make help` lists the targets.
#
# Everything a target needs (pinned tools, the control-plane binaries the tests
# run against) is installed into the git-ignored bin/ by the Makefile itself;
# only Go, make, git and kubectl are expected on the machine.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO ?= go
MODULE := open-cluster-management.io/cluster-proxy
LOCALBIN := $(CURDIR)/bin
TOOLS_BIN := $(LOCALBIN)/tools

# Pinned tool versions. Tools are installed as bin/tools/<name>-<version>, so a
# bump reinstalls.

CONTROLLER_TOOLS_VERSION ?= v0.21.0
CODE_GENERATOR_VERSION ?= v0.36.1
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.19.0

CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
CLIENT_GEN := $(TOOLS_BIN)/client-gen-$(CODE_GENERATOR_VERSION)
LISTER_GEN := $(TOOLS_BIN)/lister-gen-$(CODE_GENERATOR_VERSION)
INFORMER_GEN := $(TOOLS_BIN)/informer-gen-$(CODE_GENERATOR_VERSION)
GOLANGCI_LINT := $(TOOLS_BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM := $(TOOLS_BIN)/helm-$(HELM_VERSION)

# The control plane (kube-apiserver, kube-controller-manager, etcd) is built
# from the tool modules under hack/tools; their go.mod files pin the versions.
CONTROLPLANE_MOD := hack/tools/controlplane
ETCD_MOD := hack/tools/etcd
KUBE_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" && $$2 ~ /^v[0-9]/ {print $$2} $$1 == "require" && $$2 == "k8s.io/kubernetes" {print $$3}' $(CONTROLPLANE_MOD)/go.mod | head -n1)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
CONTROLPLANE_BIN := $(LOCALBIN)/k8s/$(KUBE_VERSION)
KUBE_APISERVER := $(CONTROLPLANE_BIN)/kube-apiserver
KUBE_CONTROLLER_MANAGER := $(CONTROLPLANE_BIN)/kube-controller-manager
ETCD := $(CONTROLPLANE_BIN)/etcd
KUBE_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean

# The D2 diagram compiler that renders docs/architecture.d2, built from the
# tool module hack/tools/d2 (its go.mod pins the version).
D2_MOD := hack/tools/d2
D2_VERSION := $(shell awk '$$1 == "require" && $$2 == "oss.terrastruct.com/d2" {print $$3} $$1 == "oss.terrastruct.com/d2" && $$2 ~ /^v[0-9]/ {print $$2}' $(D2_MOD)/go.mod | head -n1)
D2 := $(TOOLS_BIN)/d2-$(D2_VERSION)
# d2 leaves its version out of the SVG, so a tool rebuild alone changes nothing.
D2_FLAGS := --omit-version

# Tests find the control plane here (controller-runtime's envtest convention).
export KUBEBUILDER_ASSETS ?= $(CONTROLPLANE_BIN)

# Binaries of this repository (one image, all at /), named as hack/build.sh
# names them.
BINARIES := manager agent proxy-server proxy-agent
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REGISTRY ?= quay.io/open-cluster-management
IMAGE_NAME ?= cluster-proxy
IMAGE_TAG ?= latest
IMAGE ?= $(IMAGE_REGISTRY)/$(IMAGE_NAME):$(IMAGE_TAG)
PLATFORMS ?= linux/amd64,linux/arm64

# Test knobs.
GO_TEST_FLAGS ?= -race -count=1 -timeout=30m
# LABEL_FILTER selects Ginkgo specs by label. A filter that matches no spec
# fails: test-integration and test-helm run only the packages with a matching
# spec (hack/select-by-label.sh), test-e2e checks before starting anything, and
# every Ginkgo run gets -ginkgo.fail-on-empty. Under `make test` each of them
# checks on its own, so there the filter must match in every part (e.g. '!load').
LABEL_FILTER ?=
GINKGO_ARGS := $(if $(LABEL_FILTER),-ginkgo.label-filter='$(LABEL_FILTER)' -ginkgo.fail-on-empty,) -ginkgo.v
# select-by-label,<go test flags>,<packages>: those of the packages with a spec
# matching LABEL_FILTER (fails when there is none).
select-by-label = GO='$(GO)' GO_TEST_FLAGS='$(1)' hack/select-by-label.sh '$(LABEL_FILTER)' $(2)
E2E_TEST_FLAGS := -count=1 -timeout=30m
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -E '/test/(integration|e2e|localenv)(/|$$)')
E2E_DOWN ?=
# The chart suite needs the Helm CLI and runs under test-helm.
INTEGRATION_PKGS = $(shell $(GO) list ./test/integration/... | grep -v '/test/integration/helm$$')

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: manifests $(CONTROLLER_GEN) $(CLIENT_GEN) $(LISTER_GEN) $(INFORMER_GEN) ## Regenerate deepcopy, clientset, listers, informers and CRDs.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/...
	hack/update-codegen.sh "$(CLIENT_GEN)" "$(LISTER_GEN)" "$(INFORMER_GEN)"

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD into the chart (its only copy) and the manager's RBAC (config/rbac) from the code's markers.
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./pkg/apis/... output:crd:artifacts:config=charts/cluster-proxy/crds
	$(CONTROLLER_GEN) rbac:roleName=cluster-proxy-addon-manager paths=./internal/... output:rbac:artifacts:config=config/rbac

.PHONY: verify
verify: $(CONTROLLER_GEN) $(HELM) $(D2) ## Fail if generated code, CRDs, RBAC, the chart, the image's COPY lines and binaries, the architecture diagram, formatting, vet, go.mod tidiness or lint (incl. depguard's dependency rules) are off.
	hack/verify-chart.sh "$(MAKE)" "$(CONTROLLER_GEN)" "$(HELM)"
	hack/verify-diagram.sh "$(D2)" $(D2_FLAGS)
	hack/verify-image.sh "$(PLATFORMS)"
	hack/verify.sh "$(MAKE)"
	$(MAKE) lint

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (config: .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: diagram
diagram: $(D2) ## Render the architecture diagram docs/architecture.d2 to docs/architecture.svg (commit both).
	$(D2) $(D2_FLAGS) docs/architecture.d2 docs/architecture.svg

.PHONY: fmt
fmt: $(GOLANGCI_LINT) ## Format the code (gofmt + goimports).
	$(GOLANGCI_LINT) fmt ./...

##@ Build

.PHONY: build
build: ## Build all binaries into bin/ (named as in the image: manager, proxy-server, ...) and the example programs into bin/examples/.
	hack/build.sh $(LOCALBIN) $(VERSION)
	$(GO) build -o $(LOCALBIN)/examples/ ./examples/...

# `make chart` writes the chart archive and a Helm repository index into
# CHART_OUT; CHART_VERSION and CHART_APP_VERSION override Chart.yaml's,
# CHART_REPO_URL makes the index's chart URLs absolute (default: relative,
# so the directory works wherever it is served).
CHART_OUT ?= $(CURDIR)/_output/charts
CHART_VERSION ?=
CHART_APP_VERSION ?=
CHART_REPO_URL ?=

.PHONY: chart
chart: $(HELM) ## Package charts/cluster-proxy (cluster-proxy-<version>.tgz) and index it (index.yaml) in CHART_OUT, a directory `helm repo add` takes once served.
	mkdir -p $(CHART_OUT)
	$(HELM) package charts/cluster-proxy --destination $(CHART_OUT) \
		$(if $(CHART_VERSION),--version $(CHART_VERSION)) $(if $(CHART_APP_VERSION),--app-version $(CHART_APP_VERSION))
	$(HELM) repo index $(CHART_OUT) $(if $(CHART_REPO_URL),--url $(CHART_REPO_URL))

.PHONY: images
images: ## Build the multi-arch image with docker buildx (needs a container engine).
	docker buildx build --platform $(PLATFORMS) -t $(IMAGE) --build-arg VERSION=$(VERSION) .

##@ Test

.PHONY: test
test: test-unit test-fuzz test-integration test-helm ## Run unit, fuzz (short), integration, chart and end-to-end tests (the e2e environment is stopped afterwards): the CI command.
	$(MAKE) test-e2e E2E_DOWN=1 || { $(MAKE) local-down; exit 1; }

.PHONY: test-unit
test-unit: ## Run unit tests (with -race).
	$(GO) test $(GO_TEST_FLAGS) $(UNIT_PKGS)

# Fuzz targets, as <package>:<FuzzFunc>; make test runs each for FUZZ_TIME
# (their seed corpora also run as plain tests in test-unit). FUZZ_TIME is a
# count of executions (about 10-15 s here), not a duration: Go 1.26's fuzz
# coordinator can fail a duration-bounded run with "context deadline
# exceeded" at the deadline, without any failing input (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race.
FUZZ_TARGETS := ./internal/serviceproxy:FuzzResolveTarget ./internal/userserver:FuzzParseRoute ./internal/tunnel/server:FuzzPacketHandling ./pkg/client/wire:FuzzUnmarshal
FUZZ_TIME ?= 30000x

.PHONY: test-fuzz
test-fuzz: ## Run every fuzz target for FUZZ_TIME (default 30000 executions each).
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzzing $${t#*:} in $${t%%:*} for $(FUZZ_TIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZ_TIME) "$${t%%:*}" || exit 1; \
	done

.PHONY: test-integration
test-integration: controlplane ## Run integration suites against a real kube-apiserver (with -race); with LABEL_FILTER only the suites with a matching spec, failing if none has one.
ifeq ($(LABEL_FILTER),)
	$(GO) test $(GO_TEST_FLAGS) $(INTEGRATION_PKGS) -args $(GINKGO_ARGS)
	@# The local environment's packages: plain Go tests (the kubelet
	@# stand-in's needs root and a real control plane).
	$(GO) test $(GO_TEST_FLAGS) ./test/localenv/...
else
	pkgs=$$($(call select-by-label,$(GO_TEST_FLAGS),$(INTEGRATION_PKGS))); \
		$(GO) test $(GO_TEST_FLAGS) $$pkgs -args $(GINKGO_ARGS)
	@echo "test-integration: LABEL_FILTER is set: ./test/localenv/... (plain Go tests, no labels) did not run"
endif

.PHONY: test-e2e
test-e2e: $(if $(LABEL_FILTER),e2e-label-filter) local-up ## Run the end-to-end suite on the local environment (starts it if it is not up; E2E_DOWN=1 stops it afterwards); a LABEL_FILTER matching no spec fails before anything starts.
	status=0; LOCAL_STATE_DIR=$(LOCAL_STATE_DIR) HELM=$(HELM) $(GO) test -v $(E2E_TEST_FLAGS) ./test/e2e/... -args $(GINKGO_ARGS) || status=$$?; \
	if [ "$(E2E_DOWN)" = 1 ]; then $(MAKE) local-down; fi; exit $$status

# Fails when LABEL_FILTER matches no end-to-end spec (a dry run: the local
# environment is not needed).
.PHONY: e2e-label-filter
e2e-label-filter:
	$(call select-by-label,$(E2E_TEST_FLAGS),./test/e2e/...) >/dev/null

.PHONY: test-helm
test-helm: $(HELM) controlplane ## Test the Helm chart: lint, renders, RBAC and values drift, apply and helm install on a real kube-apiserver; a LABEL_FILTER matching no spec fails.
	$(if $(LABEL_FILTER),$(call select-by-label,$(GO_TEST_FLAGS),./test/integration/helm/...) >/dev/null)
	HELM=$(HELM) $(GO) test $(GO_TEST_FLAGS) ./test/integration/helm/... -args $(GINKGO_ARGS)

BENCH_ARGS ?=

.PHONY: bench
bench: $(KUBE_APISERVER) $(ETCD) ## Measure direct TCP vs our tunnel vs ANP's stock binaries, 3,500 simulated agents on our proxy-server vs ANP's, and kube GETs direct vs our user-server vs per-request tunnels, on loopback (idle machine; docs/benchmarks.md).
	$(GO) run ./test/bench $(BENCH_ARGS)

##@ Local environment

# The local environment: a hub and two managed clusters on real
# kube-apiservers and OCM, each in its own network namespace (needs root).
LOCAL_STATE_DIR ?= $(CURDIR)/_output/local
LOCALENV := $(LOCALBIN)/localenv

.PHONY: localenv
localenv:
	$(GO) build -o $(LOCALENV) ./test/localenv/cmd/localenv

.PHONY: local-up
local-up: controlplane ocm build $(HELM) localenv ## Start the hub + cluster1 + cluster2 with OCM, install the chart with helm, wait for the addon (idempotent).
	$(LOCALENV) up --state-dir=$(LOCAL_STATE_DIR) --etcd=$(ETCD) --kube-apiserver=$(KUBE_APISERVER) \
		--kube-controller-manager=$(KUBE_CONTROLLER_MANAGER) --ocm-dir=$(OCM_BIN) --image-root=$(LOCALBIN) \
		--helm=$(HELM) --chart=$(CURDIR)/charts/cluster-proxy

.PHONY: local-down
local-down: localenv ## Stop every process of the local environment and remove its state (idempotent).
	$(LOCALENV) down --state-dir=$(LOCAL_STATE_DIR)

##@ Tools and control plane

.PHONY: tools
tools: $(CONTROLLER_GEN) $(CLIENT_GEN) $(LISTER_GEN) $(INFORMER_GEN) $(GOLANGCI_LINT) $(HELM) $(D2) ## Install all pinned tools into bin/tools.

# OCM's own controllers and agents for the local environment, built from the
# tool module hack/tools/ocm (version pinned in its go.mod).
OCM_MOD := hack/tools/ocm
OCM_VERSION := $(shell awk '$$1 == "require" && $$2 == "open-cluster-management.io/ocm" {print $$3} $$1 == "open-cluster-management.io/ocm" {print $$2}' $(OCM_MOD)/go.mod | head -n1)
OCM_BIN := $(LOCALBIN)/ocm/$(OCM_VERSION)
OCM_BINARIES := $(addprefix $(OCM_BIN)/,registration work addon placement)

.PHONY: ocm
ocm: $(OCM_BINARIES) ## Build OCM's registration, work, addon and placement binaries into bin/ocm (once).

$(OCM_BINARIES): $(OCM_MOD)/go.mod $(OCM_MOD)/go.sum
	@echo "building OCM $(notdir $@) $(OCM_VERSION) (cold: about 3 minutes for all four)"
	cd $(OCM_MOD) && $(GO) build -o $@ open-cluster-management.io/ocm/cmd/$(notdir $@)

.PHONY: controlplane
controlplane: $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(ETCD) ## Build kube-apiserver, kube-controller-manager and etcd into bin/k8s (once).

$(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER): $(CONTROLPLANE_MOD)/go.mod $(CONTROLPLANE_MOD)/go.sum
	@echo "building $(notdir $@) $(KUBE_VERSION) (cold: a few minutes on 2 cores)"
	cd $(CONTROLPLANE_MOD) && $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o $@ ./cmd/$(notdir $@)

$(ETCD): $(ETCD_MOD)/go.mod $(ETCD_MOD)/go.sum
	@echo "building etcd (cold: about 2 minutes)"
	cd $(ETCD_MOD) && $(GO) build -ldflags "-s -w" -o $@ .

$(D2): $(D2_MOD)/go.mod $(D2_MOD)/go.sum
	@echo "building d2 $(D2_VERSION)"
	cd $(D2_MOD) && $(GO) build -o $@ oss.terrastruct.com/d2

# go-install-tool installs package $(2) at version $(3) as the file $(1).
define go-install-tool
@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "installing $(2)@$(3)"; \
	GOBIN=$$tmp $(GO) install $(2)@$(3); \
	mkdir -p $(dir $(1)); mv "$$tmp/$$(basename $(2))" $(1)
endef

$(CONTROLLER_GEN):
	$(call go-install-tool,$@,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))
$(CLIENT_GEN):
	$(call go-install-tool,$@,k8s.io/code-generator/cmd/client-gen,$(CODE_GENERATOR_VERSION))
$(LISTER_GEN):
	$(call go-install-tool,$@,k8s.io/code-generator/cmd/lister-gen,$(CODE_GENERATOR_VERSION))
$(INFORMER_GEN):
	$(call go-install-tool,$@,k8s.io/code-generator/cmd/informer-gen,$(CODE_GENERATOR_VERSION))
$(GOLANGCI_LINT):
	$(call go-install-tool,$@,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))
$(HELM):
	$(call go-install-tool,$@,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

.PHONY: clean
clean: ## Remove build outputs (keeps the cached control plane and tools).
	rm -f $(addprefix $(LOCALBIN)/,$(BINARIES))
