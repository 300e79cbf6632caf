# shellcheck shell=bash
# Helpers for hack/bench's client section: a private containerd, dockerd and podman in one temp dir, the
# busybox image they run, wrappers for the runtimes they call, and a teardown that leaves nothing behind.
# Source it after bundle.sh, then call roci_clients_init DIR CGPARENT once; roci_clients_teardown (from the
# caller's EXIT trap) undoes everything, whatever state the run stopped in.
#
# The layout follows the client suites' fixtures (tests/clients/containerd/fixture.rs, docker/daemon.rs,
# podman/harness.rs), everything under DIR:
#   DIR/bin/{roci,runc,crun}  the runtime wrappers every client calls (roci_runtime_wrapper)
#   DIR/image/                the busybox image, when no cached one exists (roci_busybox_archive)
#   DIR/ctr/                  containerd: config.toml (root, state, opt, gRPC/ttrpc sockets, no CRI),
#                             runc-root, fifo, log
#   DIR/docker/               dockerd: data-root, exec-root (with its own containerd), pidfile, socket, an
#                             empty daemon.json, the CLI's config dir, log; dockerd runs in a network
#                             namespace of its own (unshare --net) with --bridge=none and no iptables or
#                             ip_forward changes, so the host's network is untouched
#   DIR/podman/               podman: root, runroot, tmpdir, containers.conf (the ulimits this host allows,
#                             cgroupfs, file events and locks, CNI config in DIR), storage.conf,
#                             registries.conf, events log; `podman load` runs in a private mount namespace
#                             with DIR's dirs over /var/lib/containers, /var/tmp and /etc/containers
# Cgroups: CGPARENT/ctr/<runtime>, CGPARENT/docker/<id>, CGPARENT/podman/{conmon,libpod-<id>}.
#
# What lands outside DIR by the clients' design, and how it goes: containerd shims' sockets in
# /run/containerd/s (each shim removes its own; the teardown removes those of shims it had to kill);
# /etc/docker/key.json (dockerd 20.10 writes it when missing), and /docker and /libpod_parent cgroups:
# removed when the bench made them (they did not exist before) and, for cgroups, are empty.

rc_dir='' rc_cgparent='' rc_ctr_pid='' rc_dockerd_pid='' rc_docker_key_made=0 rc_etc_docker_made=0
rc_cg_existed=() rc_teardown_done=0 rc_ctr_argv=() rc_docker_argv=()
declare -A rc_shim_sockets=()
rc_ns=roci-bench
rc_ref=docker.io/library/busybox:latest
rc_docker=/usr/bin/docker
rc_ctr=/usr/bin/ctr
rc_podman=/usr/bin/podman

# roci_clients_init DIR CGPARENT: DIR (created, must not exist yet or be empty) holds everything; CGPARENT
# (e.g. /roci-bench-123) is the parent of every cgroup.
roci_clients_init() {
	rc_dir=${1%/} rc_cgparent=$2
	rc_ctr_argv=("$rc_ctr" -a "$rc_dir/ctr/containerd.sock" -n "$rc_ns")
	rc_docker_argv=("$rc_docker" --config "$rc_dir/docker/cli" -H "unix://$rc_dir/docker/docker.sock")
	mkdir -p "$rc_dir"/{bin,image,ctr,docker,podman}
	local cg
	for cg in /docker /libpod_parent; do
		[[ -n $(roci_cgroup_left "$cg") ]] && rc_cg_existed+=("$cg")
	done
	[[ -e /etc/docker ]] || rc_etc_docker_made=1
	[[ -e /etc/docker/key.json ]] || rc_docker_key_made=1
	return 0
}

# roci_runtime_wrapper PATH RUNTIME PREP: an executable script at PATH that runs RUNTIME with its arguments in a
# private mount namespace, after the shell commands PREP (e.g. "mount -t tmpfs tmpfs /sys/fs/cgroup/unified && ").
roci_runtime_wrapper() {
	local path=$1 runtime=$2 prep=$3
	cat >"$path" <<EOF
#!/bin/sh
# hack/bench: $runtime in a private mount namespace${prep:+ with an empty tmpfs over /sys/fs/cgroup/unified}.
exec unshare -m --propagation private /bin/sh -c '${prep}exec "\$0" "\$@"' '$runtime' "\$@"
EOF
	chmod 755 "$path"
}

# roci_image_rootfs DIR: the rootfs of the client suites' busybox image (tests/src/rootfs.rs).
roci_image_rootfs() {
	local root=$1
	# hack/lib/bundle.sh's busybox rootfs (sourced before this file), plus what the image has on top.
	roci_rootfs "$root"
	mkdir -p "$root"/{home/test,var/run,usr}
	chown 1000:1000 "$root/home/test"
	ln -s ../bin "$root/usr/bin"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ntest:x:1000:1000:test user:/home/test:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\ntty:x:5:\ntest:x:1000:\nextra:x:1001:test\nnogroup:x:65534:\n' >"$root/etc/group"
	printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
}

# roci_busybox_archive: sets REPLY to a docker-archive tarball of busybox tagged docker.io/library/busybox:latest:
# the integration suites' cached one ($TMPDIR/roci-it-cache/busybox-image/busybox.tar) when it exists, else one
# built in DIR/image as tests/src/image.rs builds it (umoci, then skopeo), which goes with DIR.
roci_busybox_archive() {
	local cached=${TMPDIR:-/tmp}/roci-it-cache/busybox-image/busybox.tar d=$rc_dir/image
	if [[ -s $cached ]]; then
		REPLY=$cached
		return 0
	fi
	echo "bench: no cached busybox image at $cached: building one in $d" >&2
	roci_need umoci umoci
	roci_need skopeo skopeo
	roci_image_rootfs "$d/rootfs"
	umoci init --layout "$d/oci" &&
		umoci new --image "$d/oci:latest" &&
		umoci insert --rootless --image "$d/oci:latest" "$d/rootfs" / >/dev/null &&
		umoci config --image "$d/oci:latest" --config.cmd sh \
			--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			--config.workingdir / --architecture amd64 --os linux &&
		skopeo copy --quiet "oci:$d/oci:latest" "docker-archive:$d/busybox.tar:$rc_ref" || return 1
	rm -rf "$d/rootfs"
	REPLY=$d/busybox.tar
}

# roci_proc_start PID: sets REPLY to the start time of PID (clock ticks since boot); fails when PID is gone or
# a zombie.
roci_proc_start() {
	local stat rest
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	rest=${stat##*) }
	# shellcheck disable=SC2086
	set -- $rest
	[[ $1 != Z && $1 != X ]] || return 1
	REPLY=${20}
}

# roci_procs_of DIR [CGROUP...]: "PID:START" of every live process but this shell whose command line names DIR/,
# whose root directory is below DIR/, or that is in one of the cgroups (relative paths, any hierarchy, with
# their descendants).
roci_procs_of() {
	local dir=${1%/}/ p pid root mnt rel f
	shift
	local -a args
	local -A seen=()
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
		if [[ " ${args[*]} " != *"$dir"* ]]; then
			root=$(readlink "$p/root" 2>/dev/null) || continue
			[[ $root == "$dir"* ]] || continue
		fi
		seen[$pid]=1
	done
	for rel in "$@"; do
		for mnt in $(roci_cgroup_mounts); do
			[[ -d $mnt$rel ]] || continue
			while IFS= read -r f; do
				while read -r pid; do [[ -n $pid ]] && seen[$pid]=1; done <"$f"
			done < <(find "$mnt$rel" -name cgroup.procs 2>/dev/null)
		done
	done
	for pid in "${!seen[@]}"; do
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		roci_proc_start "$pid" && echo "$pid:$REPLY"
	done
	return 0
}

# roci_kill_procs DIR [CGROUP...]: SIGKILL what roci_procs_of finds (each by pid, only while its start time is
# the one seen) until nothing is left, 10 s at most; prints the command lines of what it killed.
roci_kill_procs() {
	local procs entry pid i mnt rel
	# A frozen process dies only when thawed.
	for rel in "${@:2}"; do
		for mnt in $(roci_cgroup_mounts); do
			[[ -d $mnt$rel ]] || continue
			find "$mnt$rel" -name freezer.state -exec sh -c 'for f; do echo THAWED >"$f"; done' sh {} + 2>/dev/null || true
		done
	done
	for i in $(seq 50); do
		procs=$(roci_procs_of "$@")
		[[ -z $procs ]] && return 0
		for entry in $procs; do
			pid=${entry%%:*}
			if ! roci_proc_start "$pid" || [[ $REPLY != "${entry#*:}" ]]; then continue; fi
			echo "killed $pid: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
			kill -KILL "$pid" 2>/dev/null || true
		done
		sleep 0.2
	done
	echo "still alive: $(roci_procs_of "$@" | tr '\n' ' ')"
}

# roci_mounts_below DIR: mount points at or below DIR, deepest first.
roci_mounts_below() {
	awk -v d="${1%/}" '{ m = $5; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print length(m) " " m }' \
		/proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

# roci_umount_below DIR: lazily unmount everything at or below DIR, deepest first, until nothing is left (a lazy
# unmount may uncover a mount beneath it).
roci_umount_below() {
	local i m
	for i in $(seq 10); do
		local -a ms=()
		mapfile -t ms < <(roci_mounts_below "$1")
		[[ ${#ms[@]} -gt 0 ]] || return 0
		for m in "${ms[@]}"; do umount -l "$m" 2>/dev/null || true; done
	done
}

# roci_note_shim_sockets DIR: remember the /run/containerd/s socket of every live containerd shim whose command
# line names DIR/ (the socket is sha256("<address>/<namespace>/<id>"), containerd 1.6's pkg/shim).
roci_note_shim_sockets() {
	local dir=${1%/}/ p i ns id addr
	local -a args
	for p in /proc/[0-9]*; do
		mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
		[[ ${args[0]:-} == *containerd-shim* && " ${args[*]} " == *"$dir"* ]] || continue
		ns='' id='' addr=''
		for ((i = 1; i + 1 < ${#args[@]}; i++)); do
			case ${args[i]} in
			-namespace) ns=${args[i + 1]} ;;
			-id) id=${args[i + 1]} ;;
			-address) addr=${args[i + 1]} ;;
			esac
		done
		[[ -n $ns && -n $id && -n $addr ]] || continue
		rc_shim_sockets["/run/containerd/s/$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)"]=1
	done
}

# roci_alive PID: PID exists and is not a zombie.
roci_alive() { roci_proc_start "$1"; }

# roci_stop_child PID SECONDS: SIGTERM a child of this shell, SIGKILL after SECONDS, reap it.
roci_stop_child() {
	local pid=$1 secs=$2 i
	[[ -n $pid ]] || return 0
	if roci_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < secs * 10; i++)); do
			roci_alive "$pid" || break
			sleep 0.1
		done
		if roci_alive "$pid"; then
			echo "pid $pid ignored SIGTERM for $secs s: killed" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	return 0
}

# roci_wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds (0) or SECONDS pass (1).
roci_wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# --- containerd ---------------------------------------------------------------------------------------------

rc_containerd_up_or_dead() {
	! roci_alive "$rc_ctr_pid" || { [[ -S $rc_dir/ctr/containerd.sock ]] && timeout 10 "${rc_ctr_argv[@]}" version >/dev/null 2>&1; }
}

# roci_containerd_start: containerd with everything in DIR/ctr, the busybox image ($1) imported.
roci_containerd_start() {
	local d=$rc_dir/ctr archive=$1
	mkdir -p "$d"/{runc-root,fifo}
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "$d/containerd.sock"

[ttrpc]
  address = "$d/containerd.sock.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
	# Its own session: a Ctrl-C at the terminal reaches the bench, whose teardown stops it in order.
	setsid /usr/bin/containerd --config "$d/config.toml" </dev/null >"$d/containerd.log" 2>&1 &
	rc_ctr_pid=$!
	if ! roci_wait_for 20 rc_containerd_up_or_dead || ! roci_alive "$rc_ctr_pid"; then
		echo "containerd did not come up; its log:" >&2
		tail -n 20 "$d/containerd.log" >&2
		return 1
	fi
	"${rc_ctr_argv[@]}" images import "$archive" >/dev/null &&
		[[ $("${rc_ctr_argv[@]}" images ls -q) == *"$rc_ref"* ]]
}

# roci_ctr_cmd NAME RUNTIME: `ctr run --rm` of /bin/true with RUNTIME as the runc shim's binary, container
# bench-NAME in cgroup CGPARENT/ctr/NAME.
roci_ctr_cmd() {
	local d=$rc_dir/ctr
	echo "${rc_ctr_argv[*]} run --rm --runc-binary $2 --runc-root $d/runc-root --fifo-dir $d/fifo --cgroup $rc_cgparent/ctr/$1 $rc_ref bench-$1 /bin/true"
}

roci_containerd_version() { /usr/bin/containerd --version | awk '{ print $3 }'; }

# roci_containerd_stop: delete what is left through ctr, then stop containerd by pid.
roci_containerd_stop() {
	[[ -n $rc_ctr_pid ]] || return 0
	local t c
	if roci_alive "$rc_ctr_pid" && [[ -S $rc_dir/ctr/containerd.sock ]]; then
		roci_note_shim_sockets "$rc_dir"
		for t in $(timeout 10 "${rc_ctr_argv[@]}" task ls -q 2>/dev/null); do
			timeout 10 "${rc_ctr_argv[@]}" task kill -s SIGKILL --all "$t" >/dev/null 2>&1 || true
			timeout 10 "${rc_ctr_argv[@]}" task delete -f "$t" >/dev/null 2>&1 || true
		done
		for c in $(timeout 10 "${rc_ctr_argv[@]}" containers ls -q 2>/dev/null); do
			timeout 10 "${rc_ctr_argv[@]}" containers delete "$c" >/dev/null 2>&1 || true
		done
	fi
	roci_stop_child "$rc_ctr_pid" 10
	rc_ctr_pid=''
}

# --- dockerd ------------------------------------------------------------------------------------------------

rc_dockerd_up_or_dead() {
	! roci_alive "$rc_dockerd_pid" || { [[ -S $rc_dir/docker/docker.sock ]] && timeout 20 "${rc_docker_argv[@]}" version >/dev/null 2>&1; }
}

# roci_dockerd_start ARCHIVE NAME=PATH...: dockerd with everything in DIR/docker, each NAME=PATH added as a
# runtime, the image loaded.
roci_dockerd_start() {
	local d=$rc_dir/docker archive=$1 rt
	shift
	local -a runtimes=()
	for rt in "$@"; do runtimes+=(--add-runtime "$rt"); done
	mkdir -p "$d/cli"
	echo '{}' >"$d/daemon.json"
	setsid unshare --net -- /usr/sbin/dockerd --config-file "$d/daemon.json" --data-root "$d/data" \
		--exec-root "$d/exec" --pidfile "$d/docker.pid" -H "unix://$d/docker.sock" \
		--cgroup-parent "$rc_cgparent/docker" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
		--ip-forward=false --userland-proxy=false "${runtimes[@]}" </dev/null >"$d/dockerd.log" 2>&1 &
	rc_dockerd_pid=$!
	if ! roci_wait_for 60 rc_dockerd_up_or_dead || ! roci_alive "$rc_dockerd_pid"; then
		echo "dockerd did not come up; its log:" >&2
		tail -n 20 "$d/dockerd.log" >&2
		return 1
	fi
	"${rc_docker_argv[@]}" load -q -i "$archive" >/dev/null
}

# roci_docker_cmd RUNTIME-NAME: `docker run --rm` of /bin/true with the runtime dockerd knows as RUNTIME-NAME.
roci_docker_cmd() { echo "${rc_docker_argv[*]} run --rm --pull never --network none --runtime $1 $rc_ref /bin/true"; }

roci_docker_version() { "${rc_docker_argv[@]}" version --format '{{.Server.Version}}' 2>/dev/null; }

# roci_dockerd_stop: remove what is left, then stop dockerd by pid (it stops its containerd).
roci_dockerd_stop() {
	[[ -n $rc_dockerd_pid ]] || return 0
	local ids
	if roci_alive "$rc_dockerd_pid" && [[ -S $rc_dir/docker/docker.sock ]]; then
		roci_note_shim_sockets "$rc_dir"
		ids=$(timeout 30 "${rc_docker_argv[@]}" ps -aq 2>/dev/null) || true
		# shellcheck disable=SC2086
		[[ -z $ids ]] || timeout 60 "${rc_docker_argv[@]}" rm -f $ids >/dev/null 2>&1 || true
	fi
	roci_stop_child "$rc_dockerd_pid" 30
	rc_dockerd_pid=''
}

# --- podman -------------------------------------------------------------------------------------------------

# roci_podman_driver: overlay when the kernel mounts an overlay whose upper dir is on DIR's filesystem, else vfs.
roci_podman_driver() {
	local p=$rc_dir/podman/probe
	mkdir -p "$p"/{l,u,w,m}
	if unshare -m --propagation private mount -t overlay overlay -o "lowerdir=$p/l,upperdir=$p/u,workdir=$p/w" "$p/m" 2>/dev/null; then
		echo overlay
	else
		echo vfs
	fi
	rm -rf "$p"
}

# The environment and global flags of every podman command (set by roci_podman_setup).
rc_podman_env=() rc_podman_flags=''

# roci_podman_setup ARCHIVE: podman's configuration in DIR/podman and the image loaded.
roci_podman_setup() {
	local d=$rc_dir/podman archive=$1 driver seccomp=''
	mkdir -p "$d"/{conf,root,runroot,tmp,net,hooks,iso/var-tmp,iso/var-lib,iso/etc-containers/registries.conf.d}
	driver=$(roci_podman_driver)
	[[ -f /usr/share/containers/seccomp.json ]] && seccomp='seccomp_profile = "/usr/share/containers/seccomp.json"'
	: >"$d/conf/mounts.conf"
	cat >"$d/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
default_mounts_file = "$d/conf/mounts.conf"
$seccomp
[network]
network_backend = "cni"
network_config_dir = "$d/net"
cni_plugin_dirs = ["/usr/lib/cni"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$d/events.log"
lock_type = "file"
image_copy_tmp_dir = "$d/tmp"
hooks_dir = ["$d/hooks"]
tmp_dir = "$d/tmp"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "roci"]
EOF
	printf '[storage]\ndriver = "%s"\ngraphroot = "%s/root"\nrunroot = "%s/runroot"\n' "$driver" "$d" "$d" >"$d/conf/storage.conf"
	printf 'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n' >"$d/conf/registries.conf"
	echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$d/iso/etc-containers/policy.json"
	rc_podman_env=(CONTAINERS_CONF="$d/conf/containers.conf" CONTAINERS_STORAGE_CONF="$d/conf/storage.conf"
		CONTAINERS_REGISTRIES_CONF="$d/conf/registries.conf" TMPDIR="$d/tmp")
	rc_podman_flags="--root $d/root --runroot $d/runroot --tmpdir $d/tmp --cgroup-manager cgroupfs --events-backend file --storage-driver $driver"
	# Copying an image writes containers/image's blob cache in /var/lib/containers/cache, unpacks in /var/tmp
	# and reads /etc/containers/policy.json whatever the configuration says: give it DIR's dirs instead.
	local var_lib=/var/lib
	[[ -d /var/lib/containers ]] && var_lib=/var/lib/containers
	# shellcheck disable=SC2086,SC2016
	env -u CONTAINER_HOST -u CONTAINER_CONNECTION "${rc_podman_env[@]}" unshare -m --propagation private /bin/sh -c '
		set -e
		mount --bind "$1/iso/var-lib" "$2"
		mount --bind "$1/iso/var-tmp" /var/tmp
		if [ -d /etc/containers ]; then mount --bind "$1/iso/etc-containers" /etc/containers; fi
		shift 2
		exec "$@"' sh "$d" "$var_lib" "$rc_podman" $rc_podman_flags load -q -i "$archive" >"$d/load.out" 2>&1 ||
		{ cat "$d/load.out" >&2; return 1; }
	grep -q "$rc_ref" "$d/load.out" || { cat "$d/load.out" >&2; return 1; }
}

# roci_podman_cmd RUNTIME: `podman run --rm` of /bin/true with RUNTIME (a path) as podman's runtime (run it
# with the environment rc_podman_env).
roci_podman_cmd() {
	echo "$rc_podman $rc_podman_flags --runtime $1 run --rm --pull never --network none --cgroup-parent $rc_cgparent/podman $rc_ref /bin/true"
}

roci_podman_version() { "$rc_podman" --version | awk '{ print $3 }'; }

# roci_podman_stop: remove whatever containers podman still has.
roci_podman_stop() {
	[[ -n $rc_podman_flags && -d $rc_dir/podman/root ]] || return 0
	# shellcheck disable=SC2086
	env "${rc_podman_env[@]}" timeout 60 "$rc_podman" $rc_podman_flags rm -af -t 0 >/dev/null 2>&1 || true
	return 0
}

# --- teardown -----------------------------------------------------------------------------------------------

# roci_clients_teardown: stop the daemons, kill what is left of theirs (shims, conmons, podman cleanup
# processes, containers), unmount, remove shim sockets, the cgroups and files the bench made outside DIR, and
# DIR. Prints what it had to force. Idempotent.
roci_clients_teardown() {
	[[ -n $rc_dir && $rc_teardown_done == 0 ]] || return 0
	rc_teardown_done=1
	local killed s cg line
	roci_podman_stop
	roci_containerd_stop
	roci_dockerd_stop
	roci_note_shim_sockets "$rc_dir"
	killed=$(roci_kill_procs "$rc_dir" "$rc_cgparent")
	[[ -z $killed ]] || while IFS= read -r line; do echo "bench: teardown: $line"; done <<<"$killed" >&2
	roci_umount_below "$rc_dir"
	for s in "${!rc_shim_sockets[@]}"; do
		if [[ -S $s ]]; then rm -f "$s" && echo "bench: teardown: removed shim socket $s" >&2; fi
	done
	# Only empty ones, and not their other children: another user of the machine may have made them meanwhile.
	local mnt
	for cg in /docker /libpod_parent/conmon /libpod_parent; do
		[[ " ${rc_cg_existed[*]} " == *" ${cg%/conmon} "* ]] && continue
		for mnt in $(roci_cgroup_mounts); do
			if [[ -d $mnt$cg ]]; then rmdir "$mnt$cg" 2>/dev/null || true; fi
		done
	done
	if ((rc_docker_key_made)); then rm -f /etc/docker/key.json; fi
	if ((rc_etc_docker_made)); then rmdir /etc/docker 2>/dev/null || true; fi
	local left
	left=$(roci_mounts_below "$rc_dir")
	if [[ -n $left ]]; then
		echo "bench: teardown: still mounted, $rc_dir kept: $left" >&2
	else
		rm -rf --one-file-system "$rc_dir"
	fi
	return 0
}
