#!/bin/sh
# shellcheck disable=SC2086,SC2046,SC3045,SC2317
# (word splitting of $MODE_ARGS etc. is meant; dash has ulimit -n and -H;
# cleanup runs from a trap)
# Hold many concurrent idle clients (100,000 by default) against one
# throw-away mtprotod on this machine, then one more round trip on every
# one of them; print the daemon's memory per client, the kernel's socket
# memory, the daemon's CPU while they sit idle, and whether every round
# trip came back. See tests/bench/README.md ("scale").
#
#   tests/bench/scale-bench.sh [--clients N] [--hold S] [--workers W]
#       [--middle | --direct | --both] [-P classic|secure|tls]
#       [--procs N] [--mtprotod PATH] [--keep]
#
# Default: middle mode (fake_mp as the middle proxy), 100000 clients of
# the secure (dd) protocol, held 20 s. --direct: against fastdc; each
# client then holds a second socket in the worker and one in a fastdc,
# so fastdc runs as several processes (one DC index each).
# Binaries: $MTPROTOD, $MTBENCH, $FASTDC, $FAKE_MP if set, else
# ./mtprotod, tests/bench/mtbench, tests/bench/fastdc and
# tests/peers/fake_mp under the current directory (the build tree).
#
# Every process here lives under the descriptor limit it inherits (the
# soft limit is raised to the hard one): the load is spread over
# mtbench's processes (--procs, default 1 + N/8000), the clients come
# from 127.0.0.2 and up (20000 per address, so that no source address
# needs more ports than the ephemeral range has), and the daemon gets
# enough workers that each holds well under the limit (a middle client
# is 1 descriptor in its worker, a direct one 2). Nothing is pinned.
# Everything started here is stopped on exit, also on failure and ctrl-c.

set -u

CLIENTS=100000
HOLD=20
WORKERS=
PROCS=
PROTO=secure
MODES=middle
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--clients) CLIENTS=$2; shift 2 ;;
	--hold) HOLD=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	--procs) PROCS=$2; shift 2 ;;
	-P|--proto) PROTO=$2; shift 2 ;;
	--middle) MODES=middle; shift ;;
	--direct) MODES=direct; shift ;;
	--both) MODES="middle direct"; shift ;;
	--mtprotod) MTPROTOD=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h|--help) sed -n "5,31p" "$0"; exit 0 ;;
	*) echo "scale-bench.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

MTPROTOD=${MTPROTOD:-./mtprotod}
MTBENCH=${MTBENCH:-tests/bench/mtbench}
FASTDC=${FASTDC:-tests/bench/fastdc}
FAKE_MP=${FAKE_MP:-tests/peers/fake_mp}
for b in "$MTPROTOD" "$MTBENCH" "$FASTDC" "$FAKE_MP"; do
	if [ ! -x "$b" ]; then
		echo "scale-bench.sh: $b not found or not executable" \
		    "(build with 'make bench tests/peers/fake_mp')" >&2
		exit 2
	fi
done

# Every process started here inherits this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
# Descriptors a process keeps for itself (listeners, log, pipes, links).
SPARE=1000

SECRET=0123456789abcdef0123456789abcdef
AD_TAG=00112233445566778899aabbccddeeff
TMP=$(mktemp -d /tmp/mtscale.XXXXXX) || exit 1
chmod 755 "$TMP" # the dcpool reads the middle-proxy files as nobody
DAEMON_PID=
MTBENCH_PID=
PEERS=
FAILED=0

ME=scale-bench.sh
PIN_LOAD= # nothing is pinned here
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

stop_peers() {
	for p in $PEERS; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PEERS=
}

cleanup() {
	trap - EXIT INT TERM HUP
	# mtbench's load processes die with it (PR_SET_PDEATHSIG).
	if [ -n "$MTBENCH_PID" ]; then
		kill -TERM "$MTBENCH_PID" 2>/dev/null
		wait "$MTBENCH_PID" 2>/dev/null
	fi
	stop_daemon
	stop_peers
	if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
		echo "scale-bench.sh: logs kept in $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'FAILED=1; exit 130' INT TERM HUP

# ceil(a / b)
ceil_div() {
	echo $((($1 + $2 - 1) / $2))
}

write_config() {
	if [ "$(id -u)" = 0 ]; then
		ug='user = "nobody"; group = "nogroup";'
		getent group nogroup >/dev/null 2>&1 || \
		    ug='user = "nobody"; group = "nobody";'
	else
		ug=
	fi
	if [ "$MODE" = middle ]; then
		tag="ad_tag = \"$AD_TAG\";"
		tg="proxy_secret_file = \"$TMP/proxy-secret\";
  proxy_config_file = \"$TMP/proxy-multi.conf\";"
		mid='middle = { min_links = 1; clients_per_link = 300; };'
	else
		tag=
		tg="dc = ( $DC_LIST );"
		mid=
	fi
	cat > "$TMP/mtprotod.conf" <<EOF
# written by tests/bench/scale-bench.sh
$ug
workers = $W;
pidfile = "$TMP/mtprotod.pid";
state_dir = "$TMP/state";
shutdown_timeout = 2;
backend = "$MODE";
log = { target = "$TMP/mtprotod.log"; level = "notice"; };
metrics = { address = "127.0.0.1"; port = $MPORT; };
network = { discover = false; };
tls = { profile = "static"; };
listeners = (
  {
    name = "scale"; address = "127.0.0.1"; port = $PORT;
    protocols = [ "classic", "secure", "fake_tls" ];
    tls_domain = "www.example.com";
    fronting = "127.0.0.1:9";
    $tag
    users = ( { name = "scale"; secret = "$SECRET"; } );
  }
);
telegram = {
  $tg
  default_dc = 2;
};
$mid
EOF
}

start_daemon() {
	PORT=$(pick_port)
	MPORT=$(pick_port "$PORT")
	write_config
	"$MTPROTOD" -f -c "$TMP/mtprotod.conf" \
	    >> "$TMP/mtprotod.out" 2>&1 < /dev/null &
	DAEMON_PID=$!
	i=0
	while [ $i -lt 150 ]; do
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		n=0
		for k in $(children "$DAEMON_PID"); do
			case "$(tr '\0' ' ' < "/proc/$k/cmdline" 2>/dev/null)" in
			"mtprotod: worker"*) n=$((n + 1)) ;;
			esac
		done
		[ $n -ge "$W" ] && [ "$(listeners_on "$PORT")" -ge "$W" ] &&
		    break
		sleep 0.1
		i=$((i + 1))
	done
	if [ $i -ge 150 ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then
		echo "scale-bench.sh: mtprotod did not start:" >&2
		tail -20 "$TMP/mtprotod.out" "$TMP/mtprotod.log" >&2 2>/dev/null
		FAILED=1
		exit 1
	fi
	say "mtprotod pid $DAEMON_PID, $W workers, port $PORT," \
	    "metrics $MPORT, nofile $(awk '/open files/ { print $4 }' \
	    "/proc/$DAEMON_PID/limits")"
}

# Per worker: pid, descriptors, the limit.
worker_fds() {
	for k in $(children "$DAEMON_PID"); do
		case "$(tr '\0' ' ' < "/proc/$k/cmdline" 2>/dev/null)" in
		"mtprotod: worker"*)
			printf ' %s' "$(find "/proc/$k/fd" -mindepth 1 2>/dev/null | wc -l)" ;;
		esac
	done
}

# Sum of ss's skmem r (receive queue), w (send queue) and f (forward
# allocation) over the sockets of filter $1: what they hold of tcp_mem.
skmem() {
	ss -Htmn state established $1 2>/dev/null | awk -v what="$2" '
	/skmem:/ {
		s = $0
		sub(/.*skmem:\(/, "", s)
		sub(/\).*/, "", s)
		m = split(s, f, ",")
		for (i = 1; i <= m; i++) {
			k = f[i]
			sub(/[0-9]+$/, "", k)
			v = substr(f[i], length(k) + 1)
			if (k == "r" || k == "w" || k == "f")
				tot += v
			if (k == "rb")
				rb += v
			if (k == "tb")
				tb += v
		}
		n++
	}
	END {
		printf "   %s: %d sockets, %d bytes held (%.1f each);" \
		    " rcvbuf %.0f, sndbuf %.0f each (limits)\n", what, n,
		    tot, n ? tot / n : 0, n ? rb / n : 0, n ? tb / n : 0
	}' >&2
}

# Slab caches (bytes of objects), to see what a socket costs the kernel
# besides its buffers: readable by root only.
slab_snap() {
	awk 'NR > 2 { print $1, $3 * $4 }' /proc/slabinfo > "$1" 2>/dev/null
}

# The caches that grew most between $1 and $2, per client.
slab_diff() {
	awk -v n="$CLIENTS" 'NR == FNR { a[$1] = $2; next }
	{ d = $2 - a[$1]; if (d > 0) print d, $1 }' "$1" "$2" |
	    sort -rn | head -8 | awk -v n="$CLIENTS" '
	{ printf "   %-20s %8.0f bytes per client\n", $2, $1 / n; t += $1 }
	END { printf "   %-20s %8.0f bytes per client\n", "(these together)",
	    t / n }' >&2
}

metrics() {
	curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" 2>/dev/null |
	    grep -E '^mtprotod_(connections_accepted_total|connections_refused_total|accept_pauses_total|handshakes_(ok|bad)_total|handshake_timeouts_total|connections|middle_clients_dropped_total|middle_slow_clients_closed_total|middle_links_built_total|middle_link_failures_total|dc_connect_failures_total|handshakes_evicted_total|middle_links\{.*up)' |
	    sed 's/^/   /'
}

run_mode() {
	MODE=$1
	say "----- $MODE mode: $CLIENTS clients, held $HOLD s"
	if [ "$MODE" = middle ]; then
		per=1
	else
		per=2
	fi
	W=${WORKERS:-$(ceil_div $((CLIENTS * per)) $((NOFILE * 3 / 4)))}
	if [ $((CLIENTS * per / W)) -gt $((NOFILE - SPARE)) ]; then
		echo "scale-bench.sh: $W workers would hold" \
		    "$((CLIENTS * per / W)) descriptors each, over" \
		    "$NOFILE - $SPARE" >&2
		FAILED=1
		exit 1
	fi
	if [ "$MODE" = middle ]; then
		head -c 128 /dev/urandom > "$TMP/proxy-secret"
		chmod 644 "$TMP/proxy-secret"
		start_peer fake_mp "$FAKE_MP" --port 0 --control-port 0 \
		    --secret-file "$TMP/proxy-secret" --mode echo --crc32c
		MP_PID=$PEER_PID
		set -- $(grep '^READY' "$TMP/fake_mp.out")
		printf 'proxy_for 2 127.0.0.1:%s;\ndefault 2;\n' "$2" \
		    > "$TMP/proxy-multi.conf"
		chmod 644 "$TMP/proxy-multi.conf"
		MODE_ARGS="--middle --mp $MP_PID --mp-ctl $3"
	else
		# One fastdc per DC index 2, 3, ...: each holds
		# CLIENTS / NDC sockets, under its own limit, and the
		# daemon's connections to each use one port range.
		NDC=$(ceil_div "$CLIENTS" $((NOFILE / 2)))
		[ "$NDC" -lt 2 ] && NDC=2
		DC_LIST=
		FDCS=
		d=0
		while [ $d -lt "$NDC" ]; do
			start_peer "fastdc$d" "$FASTDC" echo
			FDCS="$FDCS,$PEER_PID"
			set -- $(grep '^READY' "$TMP/fastdc$d.out")
			[ -n "$DC_LIST" ] && DC_LIST="$DC_LIST, "
			DC_LIST="$DC_LIST{ id = $((d + 2)); address = \"127.0.0.1:$2\"; }"
			d=$((d + 1))
		done
		MODE_ARGS="--dc-spread $NDC"
	fi
	start_daemon
	if [ "$MODE" = middle ]; then
		# The worker builds a DC's pool on its first client.
		"$MTBENCH" -p "127.0.0.1:$PORT" -s "$SECRET" --middle prime \
		    2> "$TMP/prime.err" || {
			echo "scale-bench.sh: no round trip through" \
			    "fake_mp:" >&2
			cat "$TMP/prime.err" >&2
			FAILED=1
			exit 1
		}
	fi
	slab_snap "$TMP/slab0"
	say "sockstat before:"
	sed 's/^/   /' /proc/net/sockstat | head -2 >&2
	procs=
	[ -n "$PROCS" ] && procs="--procs $PROCS"
	t0=$(date +%s.%N)
	"$MTBENCH" -p "127.0.0.1:$PORT" -s "$SECRET" -P "$PROTO" \
	    --daemon "$DAEMON_PID" $MODE_ARGS -c "$CLIENTS" $procs \
	    --src 127.0.0.2 --hold "$HOLD" idle \
	    > "$TMP/mtbench.out" 2> "$TMP/mtbench.err" &
	MTBENCH_PID=$!
	# While they are held: what the kernel and the daemon see.
	shown=0
	EST='?'
	while kill -0 "$MTBENCH_PID" 2>/dev/null; do
		if [ $shown = 0 ] && grep -q 'holding' "$TMP/mtbench.err" \
		    2>/dev/null; then
			shown=1
			sleep 2
			say "holding: ss -s"
			ss -s 2>/dev/null | sed -n '1,3p;/^TCP /p' | \
			    sed 's/^/   /' >&2
			say "holding: /proc/net/sockstat"
			sed 's/^/   /' /proc/net/sockstat | head -2 >&2
			EST=$(ss -Htn state established "sport = :$PORT" |
			    wc -l)
			say "holding: established on port $PORT: $EST"
			say "holding: socket memory (ss -tm: r + w + f" \
			    "per socket, bytes)"
			skmem "sport = :$PORT" "the daemon's client sockets"
			skmem "dport = :$PORT" "the clients' sockets"
			skmem "" "every established socket here"
			say "holding: descriptors per worker:$(worker_fds)" \
			    "(limit $NOFILE)"
			slab_snap "$TMP/slab1"
			say "holding: slab growth (both ends of every" \
			    "connection; machine-wide)"
			slab_diff "$TMP/slab0" "$TMP/slab1"
			say "holding: metrics"
			metrics >&2
		fi
		sleep 0.5
	done
	wait "$MTBENCH_PID"
	rc=$?
	MTBENCH_PID=
	t1=$(date +%s.%N)
	cat "$TMP/mtbench.err" >&2
	if [ $rc != 0 ]; then
		echo "scale-bench.sh: FAILED: mtbench idle ($rc)" >&2
		FAILED=1
	fi
	say "after: metrics"
	metrics >&2
	say "daemon log: $(wc -l < "$TMP/mtprotod.log") lines," \
	    "$(grep -ciE 'emfile|too many open|pausing accepts' \
	    "$TMP/mtprotod.log") about descriptors; warnings and errors:"
	grep -iE 'warn|err|emfile|pausing' "$TMP/mtprotod.log" | sort |
	    uniq -c | sort -rn | head -10 | sed 's/^/   /' >&2
	say "mtbench ran $(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }') s"
	grep '^scenario=' "$TMP/mtbench.out" | sed "s/\$/ workers=$W established=$EST/" |
	    tee -a "$TMP/results.txt"
	stop_daemon
	stop_peers
	# The next mode's clients reuse the source addresses.
	sleep 1
}

for m in $MODES; do
	run_mode "$m"
done
# The numbers per client, readable.
awk '
function kv(k,  i, n, a, f) {
	n = split($0, f, " ")
	for (i = 1; i <= n; i++) {
		split(f[i], a, "=")
		if (a[1] == k)
			return a[2]
	}
	return "?"
}
{
	printf "\n%s, %s, %s clients (%s workers, %s load processes):\n",
	    kv("backend"), kv("proto"), kv("conns"), kv("workers"), kv("procs")
	printf "  open %s s, established on the port %s, errors %s, dropped %s\n",
	    kv("open_s"), kv("established"), kv("errors"), kv("dropped")
	printf "  daemon PSS %s B per client (heap %s, shared %s); workers %s\n",
	    kv("daemon_pss_bytes_per_client"),
	    kv("daemon_pss_anon_bytes_per_client"),
	    kv("daemon_pss_shared_bytes_per_client"),
	    kv("pss_bytes_per_idle_conn")
	printf "  kernel (both ends of loopback): TCP mem %s B, slab %s B per client\n",
	    kv("tcp_mem_bytes_per_client"), kv("slab_bytes_per_client")
	printf "  idle: workers %s CPU s in %s s (%s ns per client per s)\n",
	    kv("worker_cpu_s_hold"), kv("hold_s"),
	    kv("worker_ns_per_client_per_s")
	printf "  round trip after the hold: %s ok, %s failed, %s s, %s us worker CPU each\n",
	    kv("rt_ok"), kv("rt_errors"), kv("rt_s"), kv("rt_worker_us_per_client")
}' "$TMP/results.txt"
exit $FAILED
