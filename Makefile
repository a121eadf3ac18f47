# Sallyport: make help lists the targets.
GO        ?= go
BIN       := bin/sallyport
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
export SALLYPORT_CACHE ?= $(HOME)/.cache/sallyport

.PHONY: help build run test testdeps vet unit bench lint fmt clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/sallyport
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sallyport

run: build ## build and start the gateway on the built-in demo (anonymous, loopback only)
	./$(BIN) serve

test: ## install test dependencies (cached outside the checkout), vet, then unit, integration and fuzz-seed tests with -race
	@bash .ci/test.sh

testdeps: ## install the pinned npm test dependencies into $(SALLYPORT_CACHE)
	@bash .ci/testdeps.sh

vet: ## go vet everything
	$(GO) vet ./...

bench: build ## run the load harness (direct vs Sallyport vs supergateway, audit log, approval queue, DLP vs gitleaks) and the Go benchmarks
	@bash .ci/bench.sh

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: vet ## gofmt check, go vet and staticcheck (pinned, fetched from the module proxy)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf bin
