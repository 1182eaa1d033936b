#!/bin/sh
# shellcheck disable=SC2086,SC2046 # word splitting of $BULK etc. is meant
# Run every mtprotod benchmark against a throw-away daemon and fastdc
# (direct mode) or fake_mp (middle mode), then print the table. See
# tests/bench/README.md for what the numbers mean.
#
#   tests/bench/run-bench.sh [--mtprotod PATH] [--quick] [--keep]
#       [--middle | --all | --issue12] [--only SCENARIO]
#       [--users "1 100 10000"]
#
# Default: direct mode. --middle: middle-proxy mode only; --all: both.
# --issue12: middle mode, exactly the rows of issue 12 on its workload
# (50 connections x 20 MB in 16 KiB packets, 256 KiB in flight; --quick:
# 2 MB each), then those rows in the issue's layout.
# --only handshake (or bulk, latency, idle, ...): that scenario alone.
# --users LIST: only the handshake, per protocol, with each number of
# users on the listener, warm (clients come back from their address)
# and cold (each from a new address, a random user); then matchbench's
# cost of the match alone (tests/bench/matchbench), per user tried.
# MP_CRC32C=0: the fake middle proxies refuse CRC32C (plain CRC32).
# MIN_LINKS=N: middle.min_links of the daemon (default 1: one link per
# DC carries every client, so its CBC chain is serial; with more, the
# worker encrypts the links' chains side by side).
# Binaries: $MTPROTOD, $MTBENCH, $FASTDC, $FAKE_MP, $MATCHBENCH if set,
# else ./mtprotod, tests/bench/mtbench, tests/bench/fastdc,
# tests/peers/fake_mp and tests/bench/matchbench under the current
# directory (the build tree).
# Nothing is built here.
#
# The daemon runs with one worker pinned to CPU 1; fastdc or fake_mp and
# mtbench run on CPU 0 (when the machine has at least two CPUs).
# Everything started here is stopped on exit, also on failure and ctrl-c.

set -u

QUICK=0
KEEP=0
USERS_LIST=
NUSERS=0
ONLY=
DIRECT=1
MIDDLE=0
ISSUE12=0
while [ $# -gt 0 ]; do
	case "$1" in
	--mtprotod) MTPROTOD=$2; shift 2 ;;
	--mtprotod=*) MTPROTOD=${1#*=}; shift ;;
	--quick) QUICK=1; shift ;;
	--keep) KEEP=1; shift ;;
	--only) ONLY=$2; shift 2 ;;
	--middle) DIRECT=0; MIDDLE=1; shift ;;
	--direct) DIRECT=1; MIDDLE=0; shift ;;
	--all) DIRECT=1; MIDDLE=1; shift ;;
	--issue12) DIRECT=0; MIDDLE=1; ISSUE12=1; shift ;;
	--users) USERS_LIST=$2; shift 2 ;;
	-h|--help)
		sed -n '3,29p' "$0"; exit 0 ;;
	*) echo "run-bench.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

MTPROTOD=${MTPROTOD:-./mtprotod}
MTBENCH=${MTBENCH:-tests/bench/mtbench}
FASTDC=${FASTDC:-tests/bench/fastdc}
MATCHBENCH=${MATCHBENCH:-tests/bench/matchbench}
FAKE_MP=${FAKE_MP:-tests/peers/fake_mp}
NEED="$MTPROTOD $MTBENCH"
[ $DIRECT = 1 ] && NEED="$NEED $FASTDC"
[ $MIDDLE = 1 ] && NEED="$NEED $FAKE_MP"
for b in $NEED; do
	if [ ! -x "$b" ]; then
		echo "run-bench.sh: $b not found or not executable" \
		    "(build with 'make bench tests/peers/fake_mp'," \
		    "or set MTPROTOD/MTBENCH/FASTDC/FAKE_MP)" >&2
		exit 2
	fi
done

SECRET=0123456789abcdef0123456789abcdef
AD_TAG=00112233445566778899aabbccddeeff
DOMAIN=www.example.com
TMP=$(mktemp -d /tmp/mtbench.XXXXXX) || exit 1
# The dcpool reads the middle-proxy files as nobody.
chmod 755 "$TMP"
RESULTS=$TMP/results.txt
: > "$RESULTS"
FASTDC_PID=
MP_ECHO_PID=
MP_SINK_PID=
MP_SOURCE_PID=
DAEMON_PID=
PORT=
BACKEND=direct
PEER=
FAILED=0

if [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && command -v taskset \
    >/dev/null 2>&1; then
	PIN_LOAD="taskset -c 0"
	PIN=1
else
	PIN_LOAD=
	PIN=0
fi

ME=run-bench.sh
PEERS=
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

cleanup() {
	trap - EXIT INT TERM HUP
	stop_daemon
	for p in $FASTDC_PID $MP_ECHO_PID $MP_SINK_PID $MP_SOURCE_PID; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
		echo "run-bench.sh: logs and results kept in $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'FAILED=1; exit 130' INT TERM HUP

# ---------------------------------------------------------------- peers
if [ $DIRECT = 1 ]; then
	start_peer fastdc "$FASTDC" echo sink source
	FASTDC_PID=$PEER_PID
	set -- $(grep '^READY' "$TMP/fastdc.out")
	ECHO_PORT=$2
	SINK_PORT=$3
	SOURCE_PORT=$4
fi
if [ $MIDDLE = 1 ]; then
	# Both fake_mp and the dcpool use this as the proxy secret (B.2.1).
	head -c 128 /dev/urandom > "$TMP/proxy-secret"
	chmod 644 "$TMP/proxy-secret"
	# As Telegram's middle proxies (issue 12's workload): CRC32C when
	# asked (MP_CRC32C=0: plain CRC32, to compare), and no more reading
	# from a link while 4 MiB to it are unsent.
	mpopt="--out-high 4194304 --out-low 4194304"
	[ "${MP_CRC32C:-1}" = 0 ] || mpopt="$mpopt --crc32c"
	start_peer fake_mp-echo "$FAKE_MP" --port 0 --control-port 0 \
	    --secret-file "$TMP/proxy-secret" --mode echo $mpopt
	MP_ECHO_PID=$PEER_PID
	set -- $(grep '^READY' "$TMP/fake_mp-echo.out")
	MP_ECHO_PORT=$2
	MP_ECHO_CTL=$3
	start_peer fake_mp-sink "$FAKE_MP" --port 0 --control-port 0 \
	    --secret-file "$TMP/proxy-secret" --mode sink $mpopt
	MP_SINK_PID=$PEER_PID
	set -- $(grep '^READY' "$TMP/fake_mp-sink.out")
	MP_SINK_PORT=$2
	MP_SINK_CTL=$3
	start_peer fake_mp-source "$FAKE_MP" --port 0 --control-port 0 \
	    --secret-file "$TMP/proxy-secret" --mode source $mpopt
	MP_SOURCE_PID=$PEER_PID
	set -- $(grep '^READY' "$TMP/fake_mp-source.out")
	MP_SOURCE_PORT=$2
	MP_SOURCE_CTL=$3
	# DC 2 to the echoing middle proxy, DC 3 to the sinking one, DC 4
	# to the sourcing one.
	printf 'proxy_for %s 127.0.0.1:%s;\n' 2 "$MP_ECHO_PORT" \
	    3 "$MP_SINK_PORT" 4 "$MP_SOURCE_PORT" > "$TMP/proxy-multi.conf"
	echo "default 2;" >> "$TMP/proxy-multi.conf"
	chmod 644 "$TMP/proxy-multi.conf"
fi

# The listener's users: the one SECRET, or with NUSERS > 0 that many,
# user i's secret SECRET's first 24 hex digits and i in 8 (as
# mtbench --users has them).
users_conf() {
	if [ "$NUSERS" -gt 0 ]; then
		awk -v n="$NUSERS" -v p="$(echo "$SECRET" | cut -c1-24)" \
		    'BEGIN { for (i = 0; i < n; i++) printf "%s{ name = \"u%d\"; secret = \"%s%08x\"; }\n", (i ? "," : ""), i, p, i }'
	else
		echo "{ name = \"bench\"; secret = \"$SECRET\"; }"
	fi
}

write_config() {
	if [ "$(id -u)" = 0 ]; then
		ug='user = "nobody"; group = "nogroup";'
		getent group nogroup >/dev/null 2>&1 || \
		    ug='user = "nobody"; group = "nobody";'
	else
		ug=
	fi
	if [ "$BACKEND" = middle ]; then
		tag="ad_tag = \"$AD_TAG\";"
		tg="proxy_secret_file = \"$TMP/proxy-secret\";
  proxy_config_file = \"$TMP/proxy-multi.conf\";"
		mid="middle = { min_links = ${MIN_LINKS:-1}; clients_per_link = 300; };"
	else
		tag=
		tg="dc = (
    { id = 2; address = \"127.0.0.1:$ECHO_PORT\"; },
    { id = 3; address = \"127.0.0.1:$SINK_PORT\"; },
    { id = 4; address = \"127.0.0.1:$SOURCE_PORT\"; }
  );"
		mid=
	fi
	cat > "$TMP/mtprotod.conf" <<EOF
# written by tests/bench/run-bench.sh
$ug
workers = 1;
pidfile = "$TMP/mtprotod.pid";
state_dir = "$TMP/state";
shutdown_timeout = 2;
backend = "$BACKEND";
log = { target = "$TMP/mtprotod.log"; level = "warning"; };
metrics = { port = 0; };
# Nothing outside this machine: no public-address discovery, no site
# profile (the fronting target is a closed local port).
network = { discover = false; };
tls = { profile = "static"; };
listeners = (
  {
    name = "bench"; address = "127.0.0.1"; port = $PORT;
    protocols = [ "classic", "secure", "fake_tls" ];
    tls_domain = "$DOMAIN";
    fronting = "127.0.0.1:9";
    $tag
    users = ( $(users_conf) );
  }
);
telegram = {
  $tg
  default_dc = 2;
};
$mid
EOF
}

worker_pid() {
	for k in $(children "$DAEMON_PID"); do
		case "$(tr '\0' ' ' < "/proc/$k/cmdline" 2>/dev/null)" in
		"mtprotod: worker"*) echo "$k"; return ;;
		esac
	done
}

# Start a fresh daemon: new port, config, pinning.
start_daemon() {
	stop_daemon
	tries=0
	while :; do
		PORT=$(pick_port)
		write_config
		"$MTPROTOD" -f -c "$TMP/mtprotod.conf" \
		    >> "$TMP/mtprotod.out" 2>&1 < /dev/null &
		DAEMON_PID=$!
		i=0
		W=
		while [ $i -lt 100 ]; do
			kill -0 "$DAEMON_PID" 2>/dev/null || break
			W=$(worker_pid)
			[ -n "$W" ] && [ "$(listeners_on "$PORT")" -ge 1 ] &&
			    break
			sleep 0.1
			i=$((i + 1))
		done
		if [ -z "$W" ]; then
			echo "run-bench.sh: mtprotod did not start:" >&2
			tail -20 "$TMP/mtprotod.out" "$TMP/mtprotod.log" >&2 \
			    2>/dev/null
			FAILED=1
			exit 1
		fi
		# Exactly our one listening socket on that port?
		[ "$(listeners_on "$PORT")" = 1 ] && break
		tries=$((tries + 1))
		[ $tries -lt 5 ] || { echo "run-bench.sh: port clash" >&2;
		    FAILED=1; exit 1; }
		stop_daemon
	done
	if [ $PIN = 1 ]; then
		taskset -p 2 "$W" > /dev/null
		for k in $(children "$DAEMON_PID"); do
			[ "$k" = "$W" ] || taskset -p 1 "$k" > /dev/null 2>&1
		done
		taskset -p 1 "$DAEMON_PID" > /dev/null 2>&1
	fi
	say "mtprotod pid $DAEMON_PID (worker $W) on port $PORT"
}

# Middle mode: the worker creates a DC's link pool on that DC's first
# client; one round trip through DC 2, 3 and 4 each, so that no scenario
# measures the pools' set-up (and idle's growth is per client only).
prime() {
	if ! $PIN_LOAD "$MTBENCH" -p "127.0.0.1:$PORT" -s "$SECRET" \
	    --middle prime 2> "$TMP/last.err"; then
		echo "run-bench.sh: no round trip through the middle" \
		    "proxies:" >&2
		cat "$TMP/last.err" >&2
		tail -20 "$TMP/mtprotod.log" >&2 2>/dev/null
		FAILED=1
		exit 1
	fi
}

# One mtbench run; result lines go to the results file.
bench() {
	# --only: the scenario is the last argument.
	for last; do :; done
	if [ -n "$ONLY" ] && [ "$last" != "$ONLY" ]; then
		return 0
	fi
	say "mtbench $*"
	if $PIN_LOAD "$MTBENCH" -p "127.0.0.1:$PORT" -s "$SECRET" \
	    -D "$DOMAIN" --daemon "$DAEMON_PID" $PEER \
	    "$@" > "$TMP/last.out" 2> "$TMP/last.err"; then
		grep '^scenario=' "$TMP/last.out" | tee -a "$RESULTS"
	else
		echo "run-bench.sh: FAILED: mtbench $*" >&2
		cat "$TMP/last.err" >&2
		FAILED=1
	fi
	grep -v '^mtbench: ' "$TMP/last.err" >&2 || true
}

if [ $QUICK = 1 ]; then
	BULK="-t 1 -w 0.3"
	HS="-t 1.5 -w 0.5"
	LAT="-t 1.5 -w 0.3"
	IDLE="-c 1000"
	IDLE_PROTOS="tls"
	CRYPTO="-t 0.5"
else
	BULK="-t 8 -w 1"
	HS="-t 8 -w 1"
	LAT="-t 10 -w 1"
	IDLE="-c 5000"
	IDLE_PROTOS="classic secure tls"
	CRYPTO="-t 1"
fi
PROTOS="classic secure tls"
# Issue 12's middle-mode workload: 50 connections, each 20 MB in 16 KiB
# packets, at most 256 KiB in flight (echo), padding 0..15 (dd).
if [ $QUICK = 1 ]; then
	MBULK="-c 50 --bytes-per-conn 2000000"
else
	MBULK="-c 50 --bytes-per-conn 20000000"
fi
MBULK="$MBULK --packet 16384 --inflight-bytes 262144 --pad-max 15"

say "results in $RESULTS"
# CPU speed of this machine, for scale: the per-byte work of each mode.
if [ $ISSUE12 = 0 ]; then
	bench $CRYPTO openssl
	bench $CRYPTO aes
fi
if [ $MIDDLE = 1 ] && [ $ISSUE12 = 0 ]; then
	for a in cbc-enc cbc-dec crc32; do
		bench $CRYPTO --algo "$a" aes
	done
fi

if [ -n "$USERS_LIST" ] && [ $DIRECT = 1 ]; then
	# Only the handshake's cost against the number of users.
	BACKEND=direct
	PEER="--fastdc $FASTDC_PID"
	for NUSERS in $USERS_LIST; do
		start_daemon
		for p in $PROTOS; do
			bench -P "$p" --users "$NUSERS" $HS handshake
			bench -P "$p" --users "$NUSERS" --cold $HS handshake
		done
	done
	stop_daemon
	for NUSERS in $USERS_LIST; do
		[ "$NUSERS" -gt 1 ] || continue
		say "matchbench $NUSERS"
		if ! $PIN_LOAD "$MATCHBENCH" "$NUSERS"; then
			FAILED=1
		fi
	done
	DIRECT=0
	MIDDLE=0
fi

if [ $DIRECT = 1 ]; then
	BACKEND=direct
	PEER="--fastdc $FASTDC_PID"
	# Idle memory first, each on a fresh daemon: a worker that has
	# already served traffic reuses freed heap and would look cheaper
	# than it is.
	for p in $IDLE_PROTOS; do
		start_daemon
		bench -P "$p" $IDLE idle
	done

	start_daemon
	for p in $PROTOS; do
		bench -P "$p" $LAT latency
	done
	# For comparison only: the worker on the load's CPU, so no packet
	# needs a cross-CPU wake-up (expensive in VMs).
	if [ $PIN = 1 ]; then
		taskset -p 1 "$W" > /dev/null
		bench -P classic $LAT --label worker-on-cpu0 latency
		taskset -p 2 "$W" > /dev/null
	fi
	for p in $PROTOS; do
		bench -P "$p" $HS handshake
	done
	for m in upload download echo; do
		for p in $PROTOS; do
			bench -P "$p" -m "$m" $BULK bulk
		done
	done
	stop_daemon
fi

if [ $MIDDLE = 1 ] && [ $ISSUE12 = 1 ]; then
	# Issue 12's rows: idle dd on a fresh daemon; handshakes dd and ee,
	# bulk echo plain / dd / ee, upload dd, download dd on another.
	BACKEND=middle
	MP_ECHO="--mp $MP_ECHO_PID --mp-ctl $MP_ECHO_CTL"
	MP_SINK="--mp $MP_SINK_PID --mp-ctl $MP_SINK_CTL"
	MP_SOURCE="--mp $MP_SOURCE_PID --mp-ctl $MP_SOURCE_CTL"
	PEER=$MP_ECHO
	start_daemon
	prime
	bench --middle -P secure $IDLE idle
	start_daemon
	prime
	for p in secure tls; do
		bench --middle -P "$p" $HS handshake
	done
	for p in $PROTOS; do
		bench --middle -P "$p" -m echo $MBULK bulk
	done
	PEER=$MP_SINK
	bench --middle -P secure -m upload $MBULK bulk
	PEER=$MP_SOURCE
	bench --middle -P secure -m download $MBULK bulk
	stop_daemon
	MIDDLE=0
fi

if [ $MIDDLE = 1 ]; then
	BACKEND=middle
	MP_ECHO="--mp $MP_ECHO_PID --mp-ctl $MP_ECHO_CTL"
	MP_SINK="--mp $MP_SINK_PID --mp-ctl $MP_SINK_CTL"
	MP_SOURCE="--mp $MP_SOURCE_PID --mp-ctl $MP_SOURCE_CTL"
	PEER=$MP_ECHO
	for p in $IDLE_PROTOS; do
		start_daemon
		prime
		bench --middle -P "$p" $IDLE idle
	done

	start_daemon
	prime
	for p in $PROTOS; do
		bench --middle -P "$p" $HS handshake
	done
	for p in $PROTOS; do
		bench --middle -P "$p" -m echo $BULK bulk
	done
	PEER=$MP_SINK
	for p in $PROTOS; do
		bench --middle -P "$p" -m upload $BULK bulk
	done
	PEER=$MP_SOURCE
	for p in $PROTOS; do
		bench --middle -P "$p" -m download $BULK bulk
	done
	stop_daemon
fi

if [ -s "$TMP/mtprotod.log" ]; then
	say "daemon log (warnings):"
	tail -20 "$TMP/mtprotod.log" >&2
fi
"$MTBENCH" table "$RESULTS"
if [ $ISSUE12 = 1 ]; then
	# The issue's table: worker CPU per GB and per handshake, worker
	# memory per idle client.
	awk '
	function v(k,   i, n, a) {
		n = split($0, a, " ")
		for (i = 1; i <= n; i++)
			if (index(a[i], k "=") == 1)
				return substr(a[i], length(k) + 2)
		return "?"
	}
	function g(k) { return k in r ? r[k] : "-" }
	/^scenario=bulk/ {
		r["bulk " v("mode") " " v("proto")] = v("cpu_s_per_gb")
	}
	/^scenario=handshake/ {
		r["hs " v("proto")] = v("cpu_us_per_handshake")
	}
	/^scenario=idle/ {
		x = v("pss_bytes_per_idle_conn")
		r["idle " v("proto")] = x == "?" ? x : sprintf("%.1f", x / 1024)
	}
	END {
		print ""
		print "| middle mode (issue 12) | mtprotod |"
		print "|---|---|"
		printf "| bulk echo, CPU s/GB each way (plain / dd / ee) " \
		    "| %s / %s / %s |\n", g("bulk echo classic"),
		    g("bulk echo secure"), g("bulk echo tls")
		printf "| upload only, CPU s/GB (dd) | %s |\n",
		    g("bulk upload secure")
		printf "| download only, CPU s/GB (dd) | %s |\n",
		    g("bulk download secure")
		printf "| CPU us per handshake (dd / ee) | %s / %s |\n",
		    g("hs secure"), g("hs tls")
		printf "| KiB per idle client (dd) | %s |\n", g("idle secure")
	}' "$RESULTS"
fi
exit $FAILED
