/*
 * SHA-256 in SV_LANES lanes of a vector, for match16.c only: included
 * once per instruction set, after these are defined:
 *   SV            the vector type (SV_LANES 32-bit lanes)
 *   SV_FN(name)   a name made unique for this instruction set
 *   SV_TARGET     the function attribute that enables it
 *   SV_SET1(x), SV_LOAD(p), SV_ADD(a, b), SV_ROR(x, n), SV_SHR(x, n),
 *   SV_XOR3(a, b, c), SV_CH(e, f, g), SV_MAJ(a, b, c), SV_EQ(a, b)
 *   (SV_EQ: the lanes where a == b, as a bit mask)
 * and K256, IV256, struct match16_o2 and struct match16_tls.
 * The lanes read are a group's lanes [0, SV_LANES) from the pointer
 * given: word i of them at p + i * MATCH16_LANES. It undefines all of
 * the above (but the structs and tables) at its end, for the next.
 */

#define BIG_S0(a)   SV_XOR3(SV_ROR(a, 2), SV_ROR(a, 13), SV_ROR(a, 22))
#define BIG_S1(e)   SV_XOR3(SV_ROR(e, 6), SV_ROR(e, 11), SV_ROR(e, 25))
#define SMALL_S0(x) SV_XOR3(SV_ROR(x, 7), SV_ROR(x, 18), SV_SHR(x, 3))
#define SMALL_S1(x) SV_XOR3(SV_ROR(x, 17), SV_ROR(x, 19), SV_SHR(x, 10))

/* One round in every lane: d and h take their new values (the names of
 * the others move one place from call to call). */
#define RND(a, b, c, d, e, f, g, h, kw) \
	do { \
		SV t1_ = \
		    SV_ADD(SV_ADD(h, BIG_S1(e)), SV_ADD(SV_CH(e, f, g), kw)); \
		d = SV_ADD(d, t1_); \
		h = SV_ADD(t1_, SV_ADD(BIG_S0(a), SV_MAJ(a, b, c))); \
	} while (0)

/* Rounds t..t+7, kw(i) giving round i's K + W. */
#define RND8(s, t, kw) \
	do { \
		RND(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], kw(t)); \
		RND(s[7], s[0], s[1], s[2], s[3], s[4], s[5], s[6], \
		    kw(t + 1)); \
		RND(s[6], s[7], s[0], s[1], s[2], s[3], s[4], s[5], \
		    kw(t + 2)); \
		RND(s[5], s[6], s[7], s[0], s[1], s[2], s[3], s[4], \
		    kw(t + 3)); \
		RND(s[4], s[5], s[6], s[7], s[0], s[1], s[2], s[3], \
		    kw(t + 4)); \
		RND(s[3], s[4], s[5], s[6], s[7], s[0], s[1], s[2], \
		    kw(t + 5)); \
		RND(s[2], s[3], s[4], s[5], s[6], s[7], s[0], s[1], \
		    kw(t + 6)); \
		RND(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[0], \
		    kw(t + 7)); \
	} while (0)

/* Message word t >= 16 in place in the ring w[16]. */
#define SCHED(w, t) \
	(w[(t)&15] = SV_ADD(SV_ADD(w[(t)&15], SMALL_S0(w[((t)-15) & 15])), \
	     SV_ADD(w[((t)-7) & 15], SMALL_S1(w[((t)-2) & 15]))))

#define KW_RING(i)  SV_ADD(w[(i)&15], SV_SET1(K256[i]))
#define KW_SCHED(i) SV_ADD(SCHED(w, i), SV_SET1(K256[i]))

/* Rounds from..63 (from 0 or 8) of a block whose words are per lane. */
static inline __attribute__((always_inline)) SV_TARGET void
SV_FN(rounds_lanes)(SV s[8], SV w[16], int from)
{
	if (from == 0)
		RND8(s, 0, KW_RING);
	RND8(s, 8, KW_RING);
	RND8(s, 16, KW_SCHED);
	RND8(s, 24, KW_SCHED);
	RND8(s, 32, KW_SCHED);
	RND8(s, 40, KW_SCHED);
	RND8(s, 48, KW_SCHED);
	RND8(s, 56, KW_SCHED);
}

/*
 * Obfuscated2: each lane's AES key, SHA256(material || secret) as 8
 * words, from the state after the material's 8 rounds (st, w0: c's,
 * broadcast once by the caller) and the secrets' words at p.
 */
static inline __attribute__((always_inline)) SV_TARGET void
SV_FN(o2_key)(const SV st[8], const SV w0[8], const uint32_t *p, SV h[8])
{
	SV w[16];

	for (int i = 0; i < 8; i++) {
		h[i] = st[i];
		w[i] = w0[i];
	}
	for (int i = 0; i < MATCH16_O2_WORDS; i++)
		w[8 + i] = SV_LOAD(p + i * MATCH16_LANES);
	/* Then the padding of a 48-byte message. */
	w[12] = SV_SET1(0x80000000u);
	w[13] = w[14] = SV_SET1(0);
	w[15] = SV_SET1(48 * 8);
	SV_FN(rounds_lanes)(h, w, 8);
	for (int i = 0; i < 8; i++)
		h[i] = SV_ADD(h[i], SV_SET1(IV256[i]));
}

/*
 * Fake TLS: the lanes whose HMAC of the hello starts with the random's
 * 28 bytes, from the saved states after the key blocks at p.
 */
static inline __attribute__((always_inline)) SV_TARGET unsigned
SV_FN(tls_mask)(const struct match16_tls *c, const uint32_t *p)
{
	SV s[8], s0[8], w[16];
	unsigned m;

	/* Inner hash: from the ipad block's state, the hello's blocks,
	 * whose words are everyone's. */
	for (int i = 0; i < 8; i++)
		s[i] = SV_LOAD(p + i * MATCH16_LANES);
	for (size_t b = 0; b < c->nblocks; b++) {
		const uint32_t *kw = c->kw[b];
		for (int i = 0; i < 8; i++)
			s0[i] = s[i];
#define KW_BCAST(i) SV_SET1(kw[i])
		RND8(s, 0, KW_BCAST);
		RND8(s, 8, KW_BCAST);
		RND8(s, 16, KW_BCAST);
		RND8(s, 24, KW_BCAST);
		RND8(s, 32, KW_BCAST);
		RND8(s, 40, KW_BCAST);
		RND8(s, 48, KW_BCAST);
		RND8(s, 56, KW_BCAST);
#undef KW_BCAST
		for (int i = 0; i < 8; i++)
			s[i] = SV_ADD(s[i], s0[i]);
	}
	/* Outer hash: the inner digest, padded, from the opad block's
	 * state. */
	for (int i = 0; i < 8; i++)
		w[i] = s[i];
	w[8] = SV_SET1(0x80000000u);
	for (int i = 9; i < 15; i++)
		w[i] = SV_SET1(0);
	w[15] = SV_SET1((64 + 32) * 8);
	for (int i = 0; i < 8; i++)
		s[i] = s0[i] = SV_LOAD(p + (8 + i) * MATCH16_LANES);
	SV_FN(rounds_lanes)(s, w, 0);
	m = (1u << SV_LANES) - 1;
	for (int i = 0; i < 7; i++)
		m &= SV_EQ(SV_ADD(s[i], s0[i]), SV_SET1(c->want[i]));
	return m;
}

#undef BIG_S0
#undef BIG_S1
#undef SMALL_S0
#undef SMALL_S1
#undef RND
#undef RND8
#undef SCHED
#undef KW_RING
#undef KW_SCHED
#undef SV
#undef SV_LANES
#undef SV_FN
#undef SV_TARGET
#undef SV_SET1
#undef SV_LOAD
#undef SV_ADD
#undef SV_ROR
#undef SV_SHR
#undef SV_XOR3
#undef SV_CH
#undef SV_MAJ
#undef SV_EQ
