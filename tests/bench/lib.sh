# shellcheck shell=sh
# Shell functions shared by run-bench.sh and scale-bench.sh (sourced).
# The caller sets ME (its name, for messages), TMP (its temporary
# directory), FAILED, DAEMON_PID, PEERS, and PIN_LOAD (a taskset prefix
# for the load side, or empty).

say() {
	echo "== $*" >&2
}

# The pids whose parent is $1.
children() {
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		pp=$(awk '{ sub(/.*\) /, ""); print $2 }' "$d/stat" 2>/dev/null)
		[ "$pp" = "$1" ] && echo "$p"
	done
}

# SIGTERM to the daemon, up to 10 s for it to stop, then SIGKILL to it
# and to the children it had.
stop_daemon() {
	[ -n "$DAEMON_PID" ] || return 0
	kids=$(children "$DAEMON_PID")
	kill -TERM "$DAEMON_PID" 2>/dev/null
	i=0
	while kill -0 "$DAEMON_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$DAEMON_PID" 2>/dev/null
	for k in $kids; do
		kill -KILL "$k" 2>/dev/null
	done
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
}

listeners_on() {
	ss -ltnH "sport = :$1" 2>/dev/null | wc -l
}

# A port in 20000..31999 nobody listens on (and not $1).
pick_port() {
	for _ in $(seq 50); do
		p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 12000))
		[ "$p" != "${1:-}" ] && [ "$(listeners_on "$p")" = 0 ] &&
		    { echo "$p"; return; }
	done
	echo "$ME: no free port" >&2
	exit 1
}

# start_peer NAME CMD...: runs CMD (on the load CPU) until it prints
# READY; its pid in PEER_PID, also added to PEERS.
start_peer() {
	name=$1
	shift
	$PIN_LOAD "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
	PEER_PID=$!
	PEERS="$PEERS $PEER_PID"
	i=0
	while ! grep -q '^READY' "$TMP/$name.out" 2>/dev/null; do
		if ! kill -0 "$PEER_PID" 2>/dev/null || [ $i -ge 50 ]; then
			echo "$ME: $name did not start:" >&2
			cat "$TMP/$name.err" >&2
			# shellcheck disable=SC2034 # the caller's cleanup reads it
			FAILED=1
			exit 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
}
