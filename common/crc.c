/*
 * The CRCs of the RPC links' frames (spec B.2.2): zlib's CRC32, and
 * CRC32C with the SSE4.2 instruction where the CPU has it, else
 * slicing-by-8 tables. Declared in rpc.h.
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "rpc.h"

uint32_t
rpc_crc32(const uint8_t *p, size_t len)
{
	return (uint32_t)crc32_z(0, p, len);
}

/*
 * CRC32C (Castagnoli, reflected polynomial 0x82f63b78): with the SSE4.2
 * crc32 instruction when the CPU has it (checked once, at run time),
 * else slicing-by-8 over tables made at the first call.
 */
static uint32_t crc32c_tab[8][256];

/*
 * The SSE4.2 crc32 instruction takes 3 cycles but can start one every
 * cycle: three blocks of CRC32C_BLOCK bytes run as three independent
 * chains and are joined by moving the first two forward over the bytes
 * that follow them. The CRC register is linear, so advancing it over
 * CRC32C_BLOCK zero bytes is a fixed 32x32 bit matrix, applied a byte at
 * a time with these tables (made with the others).
 */
#define CRC32C_BLOCK 1024
static uint32_t crc32c_skip[4][256];

static uint32_t
crc32c_skip_block(uint32_t c)
{
	return crc32c_skip[0][c & 0xff] ^ crc32c_skip[1][(c >> 8) & 0xff] ^
	    crc32c_skip[2][(c >> 16) & 0xff] ^ crc32c_skip[3][c >> 24];
}

static void
crc32c_tables(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78U : c >> 1;
		crc32c_tab[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int t = 1; t < 8; t++)
			crc32c_tab[t][n] = (crc32c_tab[t - 1][n] >> 8) ^
			    crc32c_tab[0][crc32c_tab[t - 1][n] & 0xff];
	uint32_t bit[32];
	for (int b = 0; b < 32; b++) {
		uint32_t c = 1U << b;
		for (int k = 0; k < CRC32C_BLOCK; k++)
			c = crc32c_tab[0][c & 0xff] ^ (c >> 8);
		bit[b] = c;
	}
	for (int t = 0; t < 4; t++)
		for (uint32_t n = 0; n < 256; n++) {
			uint32_t c = 0;
			for (int b = 0; b < 8; b++)
				if (n & (1U << b))
					c ^= bit[8 * t + b];
			crc32c_skip[t][n] = c;
		}
}

static uint32_t
crc32c_soft(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = crc32c_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc; /* little endian (x86, arm64 as we build them) */
		crc = crc32c_tab[7][w & 0xff] ^ crc32c_tab[6][(w >> 8) & 0xff] ^
		    crc32c_tab[5][(w >> 16) & 0xff] ^
		    crc32c_tab[4][(w >> 24) & 0xff] ^
		    crc32c_tab[3][(w >> 32) & 0xff] ^
		    crc32c_tab[2][(w >> 40) & 0xff] ^
		    crc32c_tab[1][(w >> 48) & 0xff] ^ crc32c_tab[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc32c_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 3 * CRC32C_BLOCK) {
		uint64_t b = 0, d = 0;
		for (size_t i = 0; i < CRC32C_BLOCK; i += 8) {
			uint64_t w0, w1, w2;
			memcpy(&w0, p + i, 8);
			memcpy(&w1, p + CRC32C_BLOCK + i, 8);
			memcpy(&w2, p + 2 * CRC32C_BLOCK + i, 8);
			c = _mm_crc32_u64(c, w0);
			b = _mm_crc32_u64(b, w1);
			d = _mm_crc32_u64(d, w2);
		}
		c = crc32c_skip_block(
		        crc32c_skip_block((uint32_t)c) ^ (uint32_t)b) ^
		    (uint32_t)d;
		p += 3 * CRC32C_BLOCK;
		len -= 3 * CRC32C_BLOCK;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return (uint32_t)c;
}
#define HAVE_CRC32C_SSE42 1
#endif

static uint32_t (*crc32c_fn)(uint32_t, const uint8_t *, size_t);
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void
crc32c_pick(void)
{
	crc32c_tables();
	crc32c_fn = crc32c_soft;
#ifdef HAVE_CRC32C_SSE42
	if (getenv("MTPROTOD_NO_SSE42") == NULL &&
	    __builtin_cpu_supports("sse4.2"))
		crc32c_fn = crc32c_sse42;
#endif
}

uint32_t
rpc_crc32c(const uint8_t *p, size_t len)
{
	pthread_once(&crc32c_once, crc32c_pick);
	return crc32c_fn(0xffffffffU, p, len) ^ 0xffffffffU;
}

const char *
rpc_crc32c_impl(void)
{
	pthread_once(&crc32c_once, crc32c_pick);
	return crc32c_fn == crc32c_soft ? "table" : "sse4.2";
}
