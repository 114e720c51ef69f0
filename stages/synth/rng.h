/* rng.h — the generator's pseudo-random numbers: splitmix64, small, fast and
 * the same on every platform (no rand(), no floating point), so a seed names
 * one dataset everywhere. */
#ifndef BAGEL_SYNTH_RNG_H
#define BAGEL_SYNTH_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s;
} synth_rng_t;

static inline uint64_t synth_rng_next(synth_rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A generator for one item of a dataset: derived from the seed and the item's
 * coordinates alone, so an item does not depend on which others are made. */
static inline synth_rng_t synth_rng_for(uint64_t seed, uint64_t a, uint64_t b)
{
    synth_rng_t r = {seed};
    r.s = synth_rng_next(&r) ^ a;
    r.s = synth_rng_next(&r) ^ b;
    (void)synth_rng_next(&r);
    return r;
}

/* Uniform in [0, n), n >= 1 (multiply-high: no modulo bias worth naming). */
static inline int synth_rng_below(synth_rng_t *r, int n)
{
    return (int)(((unsigned __int128)synth_rng_next(r) * (uint64_t)n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline int synth_rng_range(synth_rng_t *r, int lo, int hi) { return lo + synth_rng_below(r, hi - lo + 1); }

/* True with probability num/den. */
static inline int synth_rng_chance(synth_rng_t *r, int num, int den) { return synth_rng_below(r, den) < num; }

#endif
