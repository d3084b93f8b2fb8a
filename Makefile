# xdpstack — run `make help` for the targets.

GO       ?= go
BIN      := bin/xdpstack
# The LD_PRELOAD library for unmodified programs (xdpstack run), built
# beside the binary, where `run` looks for it first.
LIB      := $(dir $(BIN))libxdpstack.so
CC       := gcc
LIB_CFLAGS := -O2 -g -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror
# What the tests, the demo and the benchmark run: kernel tools as peers,
# the programs run under `xdpstack run`, and the compiler of its library.
RUN_PKGS := iproute2 iperf3 iputils-ping bpftool curl util-linux ethtool netcat-openbsd openssl ngtcp2-client wrk python3 hping3 tcpdump tshark \
	wireguard-tools prometheus bash-completion zsh fish groff-base mandoc man-db systemd \
	nginx-light redis-server redis-tools openssh-server openssh-client bird2 socat gcc libc6-dev
# What `make generate` needs: the pinned compiler and the headers.
GEN_PKGS := clang-19 llvm-19 libbpf-dev linux-libc-dev
TEST_FLAGS ?= -count=1 -timeout 30m
# The unit packages run under the race detector; test/ runs the real
# binary between namespaces, where -race would only slow the peers.
UNIT_PKGS = $$($(GO) list ./... | grep -v '/test$$')
# The Kubernetes manifests' test is a module of its own, so that the
# k8s.io modules it decodes them with stay out of the daemon's go.mod.
K8S_MOD := deploy/kubernetes

# What `xdpstack version` reports, stamped by the linker into
# internal/buildinfo: the release tag (none: the Go module version), the
# commit, and the build date (SOURCE_DATE_EPOCH for a reproducible one).
VERSION    ?= $(shell git describe --tags --match 'v*' --dirty 2>/dev/null)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)
BUILD_DATE ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(date +%s)} +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO  := github.com/xdpstack/xdpstack/internal/buildinfo
LDFLAGS     = -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(COMMIT) -X $(BUILDINFO).date=$(BUILD_DATE)

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install the Debian packages the tests, demo and benchmark use (as root)
	@tools/install-packages.sh $(RUN_PKGS)
	@$(GO) mod download
	@$(GO) -C $(K8S_MOD) mod download

.PHONY: generate
generate: ## rebuild the BPF objects and their Go bindings with clang-19 (bpf2go)
	@tools/install-packages.sh $(GEN_PKGS)
	$(GO) generate ./bpf/

.PHONY: check-generate
check-generate: generate ## fail when the committed BPF output differs from a fresh generation
	@git diff --exit-code --stat -- bpf/ || { echo "committed bpf2go output is stale: run make generate and commit"; exit 1; }

.PHONY: build
build: ## build bin/xdpstack, stamped with its version, commit and build date, and bin/libxdpstack.so
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/xdpstack
	@mkdir -p $(dir $(LIB))
	$(CC) $(LIB_CFLAGS) -o $(LIB) userstack/preload/lib/libxdpstack.c -ldl -lpthread

.PHONY: man
man: build ## write the man pages, generated from the commands, to build/man
	$(BIN) man build/man

# Where `make install` puts things: PREFIX=/usr for a package, DESTDIR
# to stage the tree elsewhere. The unit runs $(PREFIX)/bin/xdpstack.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(PREFIX)/bin
LIBDIR  := $(PREFIX)/lib/xdpstack
UNITDIR := $(PREFIX)/lib/systemd/system
# The example config goes with the docs; /etc/xdpstack is the operator's.
DOCDIR  := $(PREFIX)/share/doc/xdpstack
MANDIR  := $(PREFIX)/share/man/man1
BASHDIR := $(PREFIX)/share/bash-completion/completions
ZSHDIR  := $(PREFIX)/share/zsh/vendor-completions
FISHDIR := $(PREFIX)/share/fish/vendor_completions.d
INSTALLED := $(BINDIR)/xdpstack $(LIBDIR)/libxdpstack.so $(UNITDIR)/xdpstack@.service $(UNITDIR)/xdpstack-bpffs.service $(DOCDIR)/example.yaml \
	$(BASHDIR)/xdpstack $(ZSHDIR)/_xdpstack $(FISHDIR)/xdpstack.fish

.PHONY: install
install: build man ## install the binary, the man pages, shell completions, the systemd units and an example config (PREFIX, DESTDIR)
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/xdpstack
	install -D -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/libxdpstack.so
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	sed 's|/usr/local/bin/xdpstack|$(BINDIR)/xdpstack|' deploy/systemd/xdpstack@.service > $(DESTDIR)$(UNITDIR)/xdpstack@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/xdpstack@.service
	install -m 0644 deploy/systemd/xdpstack-bpffs.service $(DESTDIR)$(UNITDIR)/xdpstack-bpffs.service
	install -m 0644 deploy/systemd/example.yaml $(DESTDIR)$(DOCDIR)/example.yaml
	install -d $(DESTDIR)$(MANDIR)
	install -m 0644 build/man/*.1 $(DESTDIR)$(MANDIR)/
	install -D -m 0644 cmd/xdpstack/completions/xdpstack.bash $(DESTDIR)$(BASHDIR)/xdpstack
	install -D -m 0644 cmd/xdpstack/completions/_xdpstack $(DESTDIR)$(ZSHDIR)/_xdpstack
	install -D -m 0644 cmd/xdpstack/completions/xdpstack.fish $(DESTDIR)$(FISHDIR)/xdpstack.fish

.PHONY: uninstall
uninstall: ## remove what make install put in place (same PREFIX, DESTDIR)
	rm -f $(addprefix $(DESTDIR),$(INSTALLED)) $(DESTDIR)$(MANDIR)/xdpstack*.1
	-rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(LIBDIR) 2>/dev/null

.PHONY: test
test: deps ## install what is needed and run every test (needs root for BPF and namespaces)
	$(GO) vet ./...
	$(GO) test -race $(TEST_FLAGS) $(UNIT_PKGS)
	$(GO) test $(TEST_FLAGS) ./test/
	$(GO) -C $(K8S_MOD) test $(TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## run each fuzz target briefly (FUZZTIME, default 20s)
	@for t in $$($(GO) test -list 'Fuzz.*' ./bpf/ | grep ^Fuzz); do \
		$(GO) test ./bpf/ -run XXX -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-20s} || exit 1; done
	@for t in $$($(GO) test -list 'Fuzz.*' ./userstack/psp/ | grep ^Fuzz); do \
		$(GO) test ./userstack/psp/ -run XXX -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-20s} || exit 1; done
	@for p in ./userstack/psp/keyx/ ./userstack/psp/pspconfig/; do \
		for t in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
		$(GO) test $$p -run XXX -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-20s} || exit 1; done; done

.PHONY: demo
demo: deps build ## build two namespaces, attach, drive kernel traffic, show the counters, a PSP gateway between them, clean up
	tools/demo/demo.sh $(BIN)

.PHONY: bench
bench: deps build ## measure against the kernel side by side and write BENCHMARKS.md
	$(GO) run ./tools/bench -binary $(BIN) -o BENCHMARKS.md
	@printf '\n## PSP encrypt and decrypt per core\n\n`go run ./tools/pspbench`; target: at least 0.8x of AES-GCM alone at 1400 B.\n\n' >> BENCHMARKS.md
	$(GO) run ./tools/pspbench | tee -a BENCHMARKS.md

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) -C $(K8S_MOD) vet ./...
	cd $(K8S_MOD) && $$($(GO) -C $(CURDIR) tool -n staticcheck) ./...

.PHONY: clean
clean: ## remove build output
	rm -rf bin build
