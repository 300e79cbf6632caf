# roci — build, demo, test, bench.
#
#   make build   static release builds of roci, roci-image, roci-cri and roci-pause (target/<host triple>/release/)
#   make demo    build, then run hack/demo (a busybox container with a memory limit)
#   make test    install missing Debian packages, unit tests, then the OCI integration suite against
#                roci and against runc (the reference), the CRI suite against roci-cri and against
#                containerd's CRI (the reference), then the cgroup tests in the cgroup v2 guest
#                when hack/v2guest/run exists. Every leg runs; make fails at the end if any failed.
#   make bench   hack/bench: roci vs runc vs crun start-to-exit time and peak RSS (hyperfine)
#   make bench-image  hack/bench-image: pull + unpack of a ~100 MB image from a local registry, roci vs
#                containerd vs skopeo+umoci, and the snapshot cost of running containers from it
#   make bench-cri  hack/bench-cri: roci-cri vs containerd 1.6's CRI (pod start, stop + remove, ExecSync,
#                memory per pod, pods started in parallel), as ratios against the goals
#   make clean   cargo clean and hack/out
#
# Single legs: test-unit, test-roci, test-runc, test-cri, test-v2guest. Variables:
#   IT_THREADS   parallel integration tests (default 4; they mostly wait on processes)
#   IT_FILTER    test-name filter for the integration suite (e.g. IT_FILTER=cgroup_)
#   BENCH_CRI_ARGS  hack/bench-cri's options (e.g. BENCH_CRI_ARGS="--runs 50 --pods 20")
#   CARGO_TARGET_DIR is honoured (default ./target).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))
export CARGO_TARGET_DIR := $(TARGET_DIR)
# roci and roci-image are linked statically against musl (Debian's musl-tools, rustup's musl target):
# no dynamic loader at each start, and a resident set a third smaller than with static glibc, whose
# start-up code and tables a short-lived runtime pays for on every run. roci uses no NSS, so nothing is
# looked up at run time. Host crates (proc macros, build scripts) stay on the host toolchain. The
# executables are not position independent (relocation-model=static): a static PIE relocates ~330 KiB
# of pointers at every start, which dirties ~700 KiB of pages; stack, heap and mmaps stay randomised.
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
TARGET := $(patsubst %-gnu,%-musl,$(HOST))
ROCI := $(TARGET_DIR)/$(TARGET)/release/roci
export ROCI
ROCI_CRI := $(TARGET_DIR)/$(TARGET)/release/roci-cri
IT_THREADS ?= 4
IT_FILTER ?=
# Debian packages the tests, demo and bench use: the reference runtimes, the container rootfs
# (busybox-static), ps(1) for `runc ps`, GNU time and hyperfine for the bench, jq for the scripts,
# criu for checkpoint/restore (which also needs iptables to lock the network during a dump), umoci and
# skopeo to build the client suites' busybox image, and the clients: containerd (with ctr and its
# runc v2 shim), Docker (docker.io, with tini for --init) and Podman (with conmon, and catatonit for its
# pause image); iproute2 for the veth pairs of the netDevices and Docker bridge tests; apparmor for
# apparmor_parser, which roci-cri and containerd load their default profiles with in the v2 guest
# (AppArmor on) and the AppArmor CRI tests load theirs with.
DEB_PACKAGES := musl-tools runc crun busybox-static procps hyperfine time jq util-linux iproute2 criu iptables umoci skopeo containerd docker.io tini podman conmon catatonit docker-registry apache2-utils containernetworking-plugins apparmor

IT := $(CARGO) test --no-fail-fast -p roci-integration --test oci --test clients
# The image suite (pull, `roci image`, `run --image`) and the monitor suite (`roci monitor`, the
# per-container parent roci-cri starts) are roci's own: they run in the roci leg only.
IT_ROCI := $(IT) --test image --test monitor
# The CRI suite runs against roci-cri and against containerd's CRI plugin (tests/cri/server.rs).
IT_CRI := $(CARGO) test --no-fail-fast -p roci-integration --test cri

.PHONY: build toolchain demo test deps test-unit test-roci test-runc test-cri test-v2guest bench bench-image bench-cri clean

# One cargo run builds the three: roci depends on libcontainer only; the image code with its registry
# client, TLS and async runtime is libimage's, which roci-image links, and roci-cri brings its own gRPC
# stack (`cargo tree -p roci -e normal` lists no tokio, rustls, reqwest, tonic or oci-client). Features of
# the crates the binaries share still unify within the run: oci-client turns on tracing's `log` (every
# event also goes to the `log` facade when no subscriber is set), chrono's and oci-spec's defaults. roci
# never installs a `log` logger and uses none of the rest, so LTO leaves almost none of it in roci: no
# `log` code, under 1 KB more text than roci built alone; the same peak RSS (hack/bench).
BUILD_ENV := CC_$(subst -,_,$(TARGET))=musl-gcc RUSTFLAGS="$(RUSTFLAGS) -C target-feature=+crt-static -C relocation-model=static"
build: toolchain
	$(BUILD_ENV) $(CARGO) build --release --target $(TARGET) -p roci -p roci-image -p roci-cri -p roci-pause

# What `build` needs beyond cargo: musl-gcc (for the C in zstd-sys and ring) and the musl target's std.
toolchain:
	@command -v musl-gcc >/dev/null || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq musl-tools >/dev/null || { apt-get update -qq && apt-get install -y -qq musl-tools; }; }
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add '$(TARGET)'

demo: build
	hack/demo $(ROCI)

deps:
	@missing=(); \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing+=("$$p"); \
	done; \
	if [[ $${#missing[@]} -gt 0 ]]; then \
		echo "installing: $${missing[*]}"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq; \
		apt-get install -y -qq "$${missing[@]}"; \
	fi

# Run every leg even when one fails (-k), fail at the end if any did.
test: deps
	$(MAKE) --no-print-directory -k test-unit test-roci test-runc test-cri test-v2guest

# Unit tests of every crate (some libcontainer tests need root: we are root). The integration
# suite is excluded here: it runs below against each runtime.
test-unit:
	$(CARGO) test --workspace --exclude roci-integration
	$(CARGO) test -p roci-integration --lib

test-roci: build
	ROCI_TEST_RUNTIME=$(ROCI) $(IT_ROCI) -- --test-threads=$(IT_THREADS) $(IT_FILTER)

test-runc: deps
	ROCI_TEST_RUNTIME=$$(command -v runc) $(IT) -- --test-threads=$(IT_THREADS) $(IT_FILTER)

# The CRI suite against the roci-cri just built, then against Debian containerd's CRI plugin; both
# runs happen, the leg fails if either did.
test-cri: build deps
	rc=0; \
	for target in roci containerd; do \
		echo "== CRI suite against $$target"; \
		ROCI_CRI=$(ROCI_CRI) ROCI_CRI_TEST_TARGET=$$target $(IT_CRI) -- --test-threads=$(IT_THREADS) $(IT_FILTER) || rc=1; \
	done; \
	exit $$rc

# The cgroup_ tests in a pure cgroup v2 guest (hack/v2guest/run), against roci (when it built: the
# test-roci leg reports a failed build) and runc; then libimage's unit tests on the guest's older
# kernel, which takes the overlay mount fallback (all but the pull and registry tests, which need a
# loopback network and credential helper scripts); then roci-cri's stats tests (cgroup v2 numbers);
# then the CRI suite's tests that exercise cgroups (CRI_V2GUEST_TESTS: a pod's cgroup under its
# cgroup_parent, container limits, UpdateContainerResources and an OOM kill seen through
# memory.events, container and pod stats, the cAdvisor-named pod metrics; CheckpointContainer,
# which needs CRIU) against
# the release roci-cri and against containerd, each
# leg in one guest (on an idle host 75 s against roci-cri, 100 s against containerd: the guest
# pulls, unpacks and runs CNI plugins under TCG). The guest runs with AppArmor on (Debian's
# kernel enables it; the test hosts have none): each daemon loads its default profile at startup,
# every pod and container naming none runs under it, and the apparmor:: tests check the profiles
# from inside the containers.
CRI_V2GUEST_TESTS := pods::a_pod_on_the_bridge_runs_and_goes containers::resources_update_and_oom_kill \
	observe::container_and_pod_stats_follow_the_containers observe::pod_metrics_follow_the_containers \
	apparmor::profiles_seen_from_inside_the_containers \
	apparmor::the_default_profile_at_startup checkpoint::checkpoint_container_dumps_a_running_container_that_keeps_running
test-v2guest:
	@if [[ ! -x hack/v2guest/run ]]; then echo "test-v2guest: hack/v2guest/run not present, skipped"; exit 0; fi; \
	bin=$$($(IT) --no-run --message-format=json \
		| jq -r 'select(.reason == "compiler-artifact" and .target.name == "oci" and .profile.test == true) | .executable' \
		| tail -n 1); \
	[[ -x "$$bin" ]] || { echo "test-v2guest: cannot find the compiled oci test binary"; exit 1; }; \
	rc=0; \
	for rt in $(ROCI) $$(command -v runc); do \
		if [[ ! -x $$rt ]]; then echo "test-v2guest: $$rt not built, skipped"; continue; fi; \
		echo "== cgroup_ tests in the v2 guest against $$rt"; \
		hack/v2guest/run --timeout 900 --share $(TARGET_DIR) --env ROCI_TEST_RUNTIME=$$rt -- "$$bin" --test-threads=2 cgroup_ checkpoint || rc=1; \
	done; \
	lib=$$($(CARGO) test -p libimage --lib --no-run --message-format=json \
		| jq -r 'select(.reason == "compiler-artifact" and .target.name == "libimage" and .profile.test == true) | .executable' \
		| tail -n 1); \
	echo "== libimage unit tests in the v2 guest (Linux 6.1: overlayfs without lowerdir+, tmpfs without user xattrs)"; \
	hack/v2guest/run --timeout 300 --share $(TARGET_DIR) -- "$$lib" --test-threads=2 --skip pull:: --skip registries:: || rc=1; \
	cri=$$($(CARGO) test -p roci-cri --lib --no-run --message-format=json \
		| jq -r 'select(.reason == "compiler-artifact" and .target.name == "roci_cri" and .profile.test == true) | .executable' \
		| tail -n 1); \
	echo "== roci-cri's stats tests in the v2 guest (a cgroup's CPU and memory numbers on cgroup v2)"; \
	hack/v2guest/run --timeout 300 --share $(TARGET_DIR) -- "$$cri" --test-threads=2 stats:: || rc=1; \
	suite=$$($(IT_CRI) --no-run --message-format=json \
		| jq -r 'select(.reason == "compiler-artifact" and .target.name == "cri" and .profile.test == true) | .executable' \
		| tail -n 1); \
	[[ -x "$$suite" ]] || { echo "test-v2guest: cannot find the compiled cri test binary"; exit 1; }; \
	for target in roci containerd; do \
		if [[ ! -x $(ROCI_CRI) || ! -x $(ROCI) ]]; then echo "test-v2guest: $(ROCI_CRI) or $(ROCI) not built, CRI tests skipped"; break; fi; \
		echo "== the CRI suite's cgroup tests in the v2 guest against $$target"; \
		hack/v2guest/run --timeout 600 --share $(TARGET_DIR) --env ROCI=$(ROCI) \
			--env ROCI_CRI=$(ROCI_CRI) --env ROCI_CRI_TEST_TARGET=$$target \
			-- "$$suite" --test-threads=2 --exact $(CRI_V2GUEST_TESTS) || rc=1; \
	done; \
	exit $$rc

bench: build
	hack/bench

bench-image: build
	hack/bench-image

# The release binaries just built (ROCI is exported above; roci-pause sits beside it); the client is the tests
# crate's bench-cri example, which hack/bench-cri builds. BENCH_CRI_ARGS: its options (e.g. --runs 50).
bench-cri: build
	ROCI_CRI=$(ROCI_CRI) hack/bench-cri $(BENCH_CRI_ARGS)

clean:
	$(CARGO) clean
	rm -rf hack/out
