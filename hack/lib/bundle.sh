# shellcheck shell=bash
# Helpers for hack/demo and hack/bench: busybox bundles, cgroup cleanup, Debian packages.
# Source it: `. "$(dirname "$0")/lib/bundle.sh"`. Needs jq and busybox-static (roci_need installs them).
#
# The layout matches the integration suite's harness (tests/src/rootfs.rs, tests/src/spec.rs): Debian's
# /bin/busybox with every applet symlinked in /bin, /etc/passwd and /etc/group, and a config.json shaped
# like `runc spec` with ociVersion 1.0.2 (crun rejects 1.2+) and no terminal.

# roci_need CMD PACKAGE...: install the Debian packages unless CMD is on PATH.
roci_need() {
	local cmd=$1
	shift
	command -v "$cmd" >/dev/null 2>&1 && return 0
	echo "installing $* (for $cmd)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

# roci_rootfs DIR: a busybox-static root filesystem in DIR.
roci_rootfs() {
	local root=$1 applet
	[[ -x /bin/busybox ]] || roci_need busybox busybox-static
	mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,mnt}
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	for applet in $(/bin/busybox --list); do
		# Never let an applet called busybox replace the binary.
		[[ $applet == busybox || $applet == */* ]] && continue
		ln -s busybox "$root/bin/$applet"
	done
	ln -s bin "$root/sbin"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# roci_config BUNDLE CGROUPS_PATH ARG...: write BUNDLE/config.json running ARG... with the cgroup
# CGROUPS_PATH (absolute, so no runtime puts it under the caller's own cgroup).
roci_config() {
	local bundle=$1 cgroups_path=$2
	shift 2
	# One --arg per element: as positional args jq would take one like `-c` for its own option.
	local args='[]' a
	for a in "$@"; do args=$(jq -cn --argjson l "$args" --arg a "$a" '$l + [$a]'); done
	jq -n --arg cg "$cgroups_path" --argjson args "$args" '{
		ociVersion: "1.0.2",
		process: {
			terminal: false, user: {uid: 0, gid: 0}, args: $args,
			env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
			cwd: "/",
			capabilities: ({bounding: ., effective: ., permitted: ., ambient: .}
				| map_values(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])),
			rlimits: [{type: "RLIMIT_NOFILE", hard: 1024, soft: 1024}],
			noNewPrivileges: true
		},
		root: {path: "rootfs", readonly: true},
		hostname: "roci",
		mounts: [
			{destination: "/proc", type: "proc", source: "proc"},
			{destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]},
			{destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
			{destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
			{destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]},
			{destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]},
			{destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"]}
		],
		linux: {
			cgroupsPath: $cg,
			resources: {devices: [{allow: false, access: "rwm"}]},
			namespaces: [{type: "pid"}, {type: "network"}, {type: "ipc"}, {type: "uts"}, {type: "mount"}],
			maskedPaths: ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
			readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
		}
	}' >"$bundle/config.json"
}

# roci_config_edit BUNDLE JQ-FILTER [JQ-ARGS...]: rewrite BUNDLE/config.json through a jq filter.
roci_config_edit() {
	local bundle=$1 filter=$2
	shift 2
	jq "$@" "$filter" "$bundle/config.json" >"$bundle/config.json.new"
	mv "$bundle/config.json.new" "$bundle/config.json"
}

# roci_cgroup_mounts: the mount point of every cgroup hierarchy (v1 controllers and cgroup2).
roci_cgroup_mounts() {
	awk '{ split($0, p, " - "); split(p[2], r, " "); split(p[1], l, " ");
		if (r[1] == "cgroup" || r[1] == "cgroup2") print l[5] }' /proc/self/mountinfo
}

# roci_cgroup_v2: true on a pure cgroup v2 host.
roci_cgroup_v2() {
	! awk '{ split($0, p, " - "); split(p[2], r, " "); if (r[1] == "cgroup") found = 1 } END { exit !found }' /proc/self/mountinfo
}

# roci_cgroup_file CONTROLLER REL FILE: host path of FILE in cgroup REL of CONTROLLER's hierarchy.
roci_cgroup_file() {
	local controller=$1 rel=$2 file=$3
	if roci_cgroup_v2; then
		echo "/sys/fs/cgroup${rel}/$file"
	else
		echo "/sys/fs/cgroup/$controller${rel}/$file"
	fi
}

# roci_cgroup_rmtree REL: remove cgroup REL (e.g. /roci-demo-123) and its children in every hierarchy.
# Only for cgroups the caller created; rmdir fails harmlessly on a cgroup that still has processes.
roci_cgroup_rmtree() {
	local rel=$1 mnt
	[[ $rel == /?* ]] || return 0
	for mnt in $(roci_cgroup_mounts); do
		[[ -d $mnt$rel ]] && find "$mnt$rel" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	return 0
}

# roci_cgroup_left REL: print the directories of cgroup REL that still exist.
roci_cgroup_left() {
	local rel=$1 mnt
	for mnt in $(roci_cgroup_mounts); do
		[[ -d $mnt$rel ]] && echo "$mnt$rel"
	done
	return 0
}
