# shellcheck shell=bash
# Helpers for hack/bench-image: a private Debian docker-registry on 127.0.0.1:<free port>, everything (config,
# storage, log) in one directory, stopped by pid. Source it after clients.sh (it uses roci_alive,
# roci_stop_child and roci_wait_for). The layout follows the image suite's fixture (tests/src/registry.rs):
#   DIR/config.yml   version 0.1, storage.filesystem.rootdirectory DIR/storage, deletes enabled, no access log,
#                    http.addr 127.0.0.1:PORT
#   DIR/storage/     the registry's blobs (docker/registry/v2/blobs/sha256/XX/DIGEST/data) and repositories
#   DIR/registry.log its output

rr_pid='' rr_host=''

# roci_free_port: prints a TCP port in 20000-60999 that no socket of this host uses (bound, listening or
# connected, IPv4 or IPv6). Another process may take it before the registry binds it: roci_registry_start
# retries then.
roci_free_port() {
	local -A used=()
	local f line port
	for f in /proc/net/tcp /proc/net/tcp6; do
		[[ -r $f ]] || continue
		# Field 2 is LOCAL_ADDRESS:PORT, the port in hex.
		while read -r _ line _; do
			[[ $line == *:* ]] || continue
			used[$((16#${line##*:}))]=1
		done <"$f"
	done
	for _ in $(seq 200); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 41000))
		[[ -z ${used[$port]:-} ]] && { echo "$port"; return 0; }
	done
	return 1
}

# rr_answers: the registry is alive and answers GET /v2/ with 200.
rr_answers() {
	roci_alive "$rr_pid" && [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$rr_host/v2/" 2>/dev/null) == 200 ]]
}
rr_up_or_dead() { ! roci_alive "$rr_pid" || rr_answers; }

# roci_registry_start DIR: docker-registry serving from DIR (created) on 127.0.0.1:<free port>, in a session of
# its own (a Ctrl-C at the terminal reaches the caller, whose EXIT trap stops it). Sets rr_host (127.0.0.1:PORT)
# and rr_pid. Tries up to 5 ports (one may be taken between the choice and the bind).
roci_registry_start() {
	local d=${1%/} port try
	mkdir -p "$d/storage"
	command -v docker-registry >/dev/null || roci_need docker-registry docker-registry
	command -v curl >/dev/null || roci_need curl curl
	for try in 1 2 3 4 5; do
		port=$(roci_free_port) || { echo "no free port found" >&2; return 1; }
		rr_host=127.0.0.1:$port
		cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/storage
  delete:
    enabled: true
http:
  addr: $rr_host
EOF
		setsid docker-registry serve "$d/config.yml" </dev/null >"$d/registry.log" 2>&1 &
		rr_pid=$!
		if roci_wait_for 20 rr_up_or_dead && rr_answers; then
			return 0
		fi
		echo "docker-registry did not come up on $rr_host (try $try); its log:" >&2
		tail -n 5 "$d/registry.log" >&2
		roci_stop_child "$rr_pid" 5
		rr_pid=''
	done
	return 1
}

roci_registry_version() { docker-registry --version | awk '{ print $3 }'; }

# roci_registry_stop: stop the registry by pid (SIGTERM, SIGKILL after 10 s). Idempotent.
roci_registry_stop() {
	[[ -n $rr_pid ]] || return 0
	roci_stop_child "$rr_pid" 10
	rr_pid=''
}
