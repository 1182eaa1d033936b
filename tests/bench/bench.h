/*
 * Shared parts of the benchmark programs (fastdc, mtbench): a test
 * pattern both ends agree on, readings from /proc, and a non-blocking
 * MTProto client connection (obfuscated2 classic or secure, or fake TLS
 * with obfuscated2 inside) built on the project's codecs.
 *
 * These are load generators, not part of the daemon: they favour cheap
 * client-side work (so the proxy is what gets measured) over realism
 * where the proxy cannot tell the difference.
 */
#ifndef MTP_BENCH_H
#define MTP_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "o2.h"
#include "tls.h"

/* ------------------------------------------------------------ misc */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* Sleep until the CLOCK_MONOTONIC instant t (ns). */
void bench_sleep_until(uint64_t t);
/* Session ids, padding and nonces: cheap_rand64() and
 * cheap_rand_bytes() of common/util.h (reseeded in each fork child). */

/*
 * The plaintext stream both ends send and check: byte p of a stream is
 * bench_pattern[p % BENCH_PATTERN_LEN]. The array is twice as long, so
 * any run of up to BENCH_PATTERN_LEN bytes is contiguous from
 * bench_pattern + (p % BENCH_PATTERN_LEN).
 */
#define BENCH_PATTERN_LEN 65536
extern uint8_t bench_pattern[2 * BENCH_PATTERN_LEN];
void bench_pattern_init(void);
/* 1 if buf[0..len) is the pattern at stream position pos. */
int bench_pattern_check(const uint8_t *buf, size_t len, uint64_t pos);

/* ------------------------------------------------------------ /proc */

/* user + system CPU seconds of a process (all its threads); -1 if gone. */
double bench_proc_cpu(pid_t);
/* Our own user + system CPU seconds (this process only). */
double bench_self_cpu(void);
/* A field of /proc/<pid>/smaps_rollup ("Pss", "Rss", "Pss_Anon",
 * "Pss_Shmem", ...) in bytes; -1 if unreadable or absent. */
long long bench_proc_smaps(pid_t, const char *field);
/* Bytes a process read and wrote by system calls (/proc/<pid>/io
 * rchar, wchar; sockets included); -1 if unreadable. */
int bench_proc_io(pid_t, uint64_t *rchar, uint64_t *wchar);
/* Open descriptors of a process, -1 if unreadable. */
int bench_proc_nfds(pid_t);
/*
 * The pids of a daemon's worker processes: children of daemon whose
 * title starts with "mtprotod: worker". Returns how many (<= max).
 */
int bench_find_workers(pid_t daemon, pid_t *out, int max);

/* ------------------------------------------------------------ client */

enum bench_proto {
	BENCH_CLASSIC, /* obfuscated2, tag ee (intermediate) */
	BENCH_SECURE, /* obfuscated2, tag dd (padded) */
	BENCH_TLS, /* fake TLS, tag dd inside */
};

const char *bench_proto_name(enum bench_proto);
/* "classic", "secure", "tls"; -1 if unknown. */
int bench_proto_parse(const char *);

/* Where and how the clients connect. */
struct bench_target {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint8_t secret[O2_SECRET_LEN];
	char domain[TLS_SNI_MAX + 1];
	enum bench_proto proto;
	int16_t dc;
	/* Largest record payload the client sends (tdlib: 2878). */
	size_t tls_record;
	/* Send the pattern unencrypted and do not decrypt what comes
	 * back: the proxy cannot tell, the load side saves its AES. */
	int nocrypt;
	/* Bind to this source address first (many clients on loopback). */
	struct sockaddr_in src;
	int has_src;
};

/* Connection states. */
#define BCONN_IDLE       0 /* not started or closed */
#define BCONN_CONNECTING 1 /* TCP connect in progress */
#define BCONN_HELLO      2 /* ClientHello sent, awaiting answer */
#define BCONN_READY      3 /* header sent: stream open both ways */

/* Results of bconn_read(); a count >= 0 is stream bytes. */
#define BCONN_AGAIN (-1)
#define BCONN_EOF   (-2)
#define BCONN_ERROR (-3)

struct bconn {
	const struct bench_target *t;
	int fd;
	int state;
	uint32_t events; /* what the caller polls for */
	struct o2_session o2;
	struct tls_reader tr;
	uint8_t crandom[TLS_RANDOM_LEN];
	/* Handshake input (the ServerHello), freed when READY. */
	uint8_t *hin;
	size_t hin_len;
	/* Stream bytes to send together with the header. */
	const uint8_t *first;
	size_t first_len;
	/* Encrypted, framed bytes the socket has not taken yet. */
	uint8_t *obuf;
	size_t ocap, ooff, olen;
	uint64_t up; /* stream bytes queued for sending */
	uint64_t down; /* stream bytes received */
	uint64_t t_start;
	int err; /* errno of the last failure */
	const char *why; /* what failed, for messages */
};

/*
 * Start a connection: socket, non-blocking connect. first/first_len (may
 * be NULL/0) are stream bytes sent right after the obfuscated2 header, as
 * apps do. Returns 0, or -1 (c->why, c->err say why). c->events is what
 * to poll for.
 */
int bconn_start(struct bconn *, const struct bench_target *,
    const uint8_t *first, size_t first_len);
/*
 * Drive the handshake after poll reported events. Returns 1 once the
 * stream is open (BCONN_READY), 0 while in progress, -1 on failure.
 */
int bconn_handshake(struct bconn *, uint32_t events);
/*
 * Queue len stream bytes (plaintext; encrypted in place in the output
 * buffer, wrapped in TLS records for fake TLS) and try to send. Returns
 * 0, or -1 on a socket error. Pending bytes are sent by bconn_flush.
 */
int bconn_write(struct bconn *, const uint8_t *, size_t);
/*
 * Queue the iovcnt pieces as one run of stream bytes (as bconn_write of
 * their concatenation: a frame header and its packet share TLS records)
 * and try to send. Returns 0, or -1 on a socket error.
 */
int bconn_writev(struct bconn *, const struct iovec *, int iovcnt);
/* Queue len bytes of the pattern at the position c->up. */
int bconn_write_pattern(struct bconn *, size_t len);
/* Send pending bytes: 1 when none are left, 0 on EAGAIN, -1 on error. */
int bconn_flush(struct bconn *);
/* 1 if output is pending. */
int bconn_pending(const struct bconn *);
/*
 * Read once from the socket into buf (cap bytes) and return the stream
 * bytes it carried (decrypted unless nocrypt; TLS headers removed), which
 * may be 0; or BCONN_AGAIN, BCONN_EOF, BCONN_ERROR.
 */
ssize_t bconn_read(struct bconn *, uint8_t *buf, size_t cap);
/* Close the socket and free everything; c may be started again. */
void bconn_close(struct bconn *);
/* Close with RST instead of FIN (no TIME_WAIT on our side). */
void bconn_abort(struct bconn *);

/* Parse "host:port" (numeric) into t; 0 or -1. */
int bench_target_addr(struct bench_target *, const char *);

#endif
