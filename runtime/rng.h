/* rng.h: a seeded, reproducible random generator (xoshiro256**, seeded through
 * splitmix64). Every random choice in bertcc takes one of these explicitly. */
#ifndef BERTCC_RT_RNG_H
#define BERTCC_RT_RNG_H

#include <stdint.h>

typedef struct rt_rng {
    uint64_t s[4];
} rt_rng;

void rt_rng_seed(rt_rng *r, uint64_t seed);
uint64_t rt_rng_next(rt_rng *r);
double rt_rng_uniform(rt_rng *r);             /* [0, 1) with 53 bits */
uint64_t rt_rng_below(rt_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
double rt_rng_normal(rt_rng *r);              /* standard normal (Box-Muller) */
uint64_t rt_hash_str(const char *s);          /* FNV-1a, for per-name streams */

#endif
