# vpn-confinement — build, test, install.
#   make            build binaries and units into build/
#   make test       the whole test suite (unit + root sandbox + systemd e2e); needs root
#   make demo       the main job: a real confinement demo in a throwaway systemd container
#   make install    DESTDIR/PREFIX aware install
# Each of them first runs packaging/deps.sh for what it needs: as root it
# installs missing Debian packages, otherwise it names them and stops.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBEXECDIR  ?= $(PREFIX)/lib/vpn-confinement
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
GENERATORDIR   ?= $(PREFIX)/lib/systemd/system-generators
MANDIR      ?= $(PREFIX)/share/man
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
DATADIR     ?= $(PREFIX)/share/vpn-confinement
CLI_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DESTDIR     ?=
GO          ?= go
GOFLAGS     ?= -trimpath
MODULE      := github.com/vpn-confinement/vpn-confinement
LDFLAGS     := -s -w -X $(MODULE)/internal/generator.DefaultUnitDir=$(SYSTEMDUNITDIR) -X $(MODULE)/internal/units.LibexecDir=$(LIBEXECDIR)
B           := build

# Go: a fresh machine of this project's kind has it in /usr/local/go/bin,
# not always in PATH.
ifneq ($(wildcard /usr/local/go/bin/go),)
ifeq ($(filter /usr/local/go/bin,$(subst :, ,$(PATH))),)
export PATH := $(PATH):/usr/local/go/bin
endif
endif
# What the goals need, for packaging/deps.sh: the widest of them wins
# (one check per make run, before anything else, also under -j).
DEPS_FOR := $(or $(if $(filter test test-%,$(MAKECMDGOALS)),test),$(if $(filter bench,$(MAKECMDGOALS)),bench),$(if $(filter demo,$(MAKECMDGOALS)),demo),build)

HELPERS := vpn-confinement-netns vpn-confinement-wireguard vpn-confinement-pin vpn-confinement-tripwire vpn-confinement-portfwd
UNITS   := vpn-ns@.service vpn-wg@.service vpn-pin@.service vpn-pf@.service
MANPAGES := vpn-confinement.d.5 vpn-confinement-generator.8 vpn-confinement.8

.PHONY: deps test-fresh test-fuzz deb install-files all build test test-unit test-root test-e2e fuzz check install uninstall clean demo bench golden man

all: build

deps:
	@GO='$(GO)' packaging/deps.sh $(DEPS_FOR)

build: $(B)/vpn-confinement $(B)/vpn-confinement-generator $(addprefix $(B)/,$(HELPERS)) $(addprefix $(B)/units/,$(UNITS)) man

$(B)/vpn-confinement: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS) -X $(MODULE)/internal/cli.Version=$(CLI_VERSION)' -o $@ ./cli
$(B)/vpn-confinement-generator: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $@ ./generator
$(B)/vpn-confinement-netns: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $@ ./helpers/netns
$(B)/vpn-confinement-wireguard: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $@ ./helpers/wireguard
$(B)/vpn-confinement-pin: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $@ ./helpers/pin
$(B)/vpn-confinement-portfwd: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $@ ./helpers/portfwd
$(B)/vpn-confinement-tripwire: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $@ ./helpers/tripwire
$(B)/units/%: units/%.in FORCE
	@mkdir -p $(B)/units
	sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' $< > $@

man: $(addprefix $(B)/man/,$(MANPAGES))
$(B)/man/%: man/%.md | deps
	@mkdir -p $(B)/man
	go-md2man -in $< -out $@

FORCE:

# The README's test command. Unit tier (no root), then the root tier in a
# throwaway sandbox (test/sandbox.sh: private net/mount/pid namespaces, tmpfs
# /run), then the systemd end-to-end tier in a throwaway container.
test: deps test-unit test-fuzz test-root test-e2e test-vm test-fresh

test-unit: | deps
	$(GO) vet ./...
	$(GO) test -count=1 ./...

test-root: | deps
	test/sandbox.sh $(GO) test -count=1 -p 1 $$($(GO) list ./... | grep -v /test/e2e)

test-e2e: build | deps
	@if [ -d test/e2e ]; then test/sandbox.sh $(GO) test -count=1 -v -timeout 45m ./test/e2e/; fi

# Test tools (not installed): the traffic probe and the test VPN provider.
TOOLS := $(B)/vpnc-probe $(B)/vpnc-testpeer
$(B)/vpnc-probe: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./test/probe
$(B)/vpnc-testpeer: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./test/testpeer
$(B)/vpnc-demo: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./test/demo

# Kernel WireGuard in a QEMU/TCG guest (the host has no WireGuard module).
test-vm: build $(TOOLS)
	test/vm/run.sh $(abspath $(B)) $(abspath $(B))

# The README's main job: a real demonstration in a throwaway systemd
# container; nothing on the host changes.
demo: deps build $(TOOLS) $(B)/vpnc-demo
	test/sandbox.sh $(B)/vpnc-demo -repo $(CURDIR) -build $(abspath $(B)) -tools $(abspath $(B))

$(B)/vpnc-bench: FORCE | deps
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./test/bench

# The README's first command on a fresh machine: `make demo` in a throwaway
# copy of a minimal Debian 12 root without the project's dependencies
# (test/fresh.sh). The root gets Go and the module cache read-only, so
# download them here first.
test-fresh: | deps
	$(GO) mod download
	test/fresh.sh

# Every speed claim, as ratios against baselines run side by side; writes
# docs/benchmarks.md. Root measures run inside the sandbox.
bench: deps build $(TOOLS) $(B)/vpnc-bench
	test/sandbox.sh $(B)/vpnc-bench -repo $(CURDIR) -build $(abspath $(B))

# Short fuzzing of the YAML → validated model path and the parsers, part of
# make test (make fuzz FUZZTIME=10m for a longer run). The budget is a count,
# not a duration: a duration can end mid-work, which go test then reports as
# "context deadline exceeded".
FUZZTIME ?= 40000x
test-fuzz fuzz: | deps
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzParseEndpoint$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/wgquick -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)

golden:
	$(GO) test ./internal/generator ./generator ./internal/firewall ./internal/tripwire ./internal/cli/schemacheck -update

check:
	bash -n contrib/bash-completion/vpn-confinement
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	@! $(GO) list -deps ./generator | grep -E 'vishvananda|nftables|wgctrl|wireguard/device|godbus' || { echo "generator must not import kernel/IPC packages"; exit 1; }

install: build
	$(MAKE) install-files

# install-files installs what build produced (the e2e harness uses it to
# install into a container root exactly as `make install` does).
install-files:
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(GENERATORDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)/etc/vpn-confinement.d
	install -m 0755 $(addprefix $(B)/,$(HELPERS)) $(DESTDIR)$(LIBEXECDIR)/
	install -m 0755 $(B)/vpn-confinement-generator $(DESTDIR)$(GENERATORDIR)/vpn-confinement-generator
	# Templates are rendered here, with this install's LIBEXECDIR, so the
	# units always name the helpers actually installed.
	for u in $(UNITS); do sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' units/$$u.in > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	install -m 0644 $(B)/man/vpn-confinement.d.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(B)/man/vpn-confinement-generator.8 $(B)/man/vpn-confinement.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(DATADIR)
	install -m 0755 $(B)/vpn-confinement $(DESTDIR)$(BINDIR)/vpn-confinement
	install -m 0644 contrib/bash-completion/vpn-confinement $(DESTDIR)$(COMPLETIONDIR)/vpn-confinement
	install -m 0644 schema/vpn-confinement.schema.json $(DESTDIR)$(DATADIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(LIBEXECDIR)/,$(HELPERS)) $(DESTDIR)$(GENERATORDIR)/vpn-confinement-generator
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(MANDIR)/man5/vpn-confinement.d.5 $(DESTDIR)$(MANDIR)/man8/vpn-confinement-generator.8 $(DESTDIR)$(MANDIR)/man8/vpn-confinement.8
	rm -f $(DESTDIR)$(BINDIR)/vpn-confinement $(DESTDIR)$(COMPLETIONDIR)/vpn-confinement $(DESTDIR)$(DATADIR)/vpn-confinement.schema.json
	-rmdir $(DESTDIR)$(DATADIR)
	-rmdir $(DESTDIR)$(LIBEXECDIR)

deb: build
	packaging/deb/build.sh

clean:
	rm -rf $(B)
