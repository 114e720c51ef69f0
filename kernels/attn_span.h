/* attn_span.h — op_attn_visible (kernels/ops.h) read as spans of positions,
 * for kernels that mask whole tiles at once with bit operations.
 *
 * For a query q in split s of a sample that starts at position a:
 *   the keys q sees are [a, b) less the noise keys, and all of [b, c),
 *   where b is the start of s and c is q + 1 when s is causal, else s's end.
 * (Every earlier split of the sample precedes q wholly; of those only noise
 * splits are hidden. Of q's own split, a causal one shows up to q.)
 * For a key k in split s:
 *   the queries that see k are one run [lo, hi): lo is k when s is causal,
 *   else s's start; hi is s's end when s is noise, else the sample's end.
 *
 * C and CUDA alike (host and device functions); the unit test
 * tests/unit/test_ops.c checks both readings against op_attn_visible. */
#ifndef BAGEL_ATTN_SPAN_H
#define BAGEL_ATTN_SPAN_H

#include <stdint.h>

#include "ops.h"

#ifdef __CUDACC__
#define ATTN_HD __host__ __device__
#else
#define ATTN_HD
#endif

/* the keys query p (in split sp) sees: [*a, *b) but noise, and [*b, *c) */
ATTN_HD static inline void attn_span_query(const int32_t *ss, const int32_t *sf, const uint8_t *sm, int sp, int p,
                                           int *a, int *b, int *c)
{
    *a = ss[sf[sp]];
    *b = ss[sp];
    *c = sm[sp] == OP_SPLIT_CAUSAL ? p + 1 : ss[sp + 1];
}

/* the queries that see key p (in split sp): [*lo, *hi) */
ATTN_HD static inline void attn_span_key(const int32_t *ss, const int32_t *sf, int n_splits, const uint8_t *sm,
                                         int sp, int p, int *lo, int *hi)
{
    *lo = sm[sp] == OP_SPLIT_CAUSAL ? p : ss[sp];
    int e = sp;
    if (sm[sp] != OP_SPLIT_NOISE)
        while (e + 1 < n_splits && sf[e + 1] == sf[sp])
            e++;
    *hi = ss[e + 1];
}

/* bit i set for position p0 + i in [lo, hi), i < 64 */
ATTN_HD static inline uint64_t attn_bits64(int lo, int hi, int p0)
{
    int l = lo - p0, h = hi - p0;
    l = l < 0 ? 0 : l;
    h = h > 64 ? 64 : h;
    if (h <= l)
        return 0;
    uint64_t m = h == 64 ? ~(uint64_t)0 : (((uint64_t)1 << h) - 1);
    return m & (~(uint64_t)0 << l);
}

#endif
