/*
 * The latency histogram's hot path (xdpgw/pipeline/histogram.py LatencyHistogram.record_since): for each non-zero
 * stamp, value = now - stamp, bucketed log-linearly exactly as LatencyHistogram.index_of does, with the
 * batch's count/min/max/mean/M2 returned for the exact running statistics. One call per burst, no numpy.
 */
#include <stdint.h>

#include "hist.h"

void xgw_hist_since(int64_t *counts, int64_t ncounts, uint32_t sub_bits, int64_t highest, int64_t now,
                    const uint64_t *stamps, uint32_t nstamps, struct xgw_hist_batch *out)
{
    int64_t half = (int64_t)1 << (sub_bits - 1);
    int64_t n = 0, mn = 0, mx = 0, rej = 0, sat = 0;
    double mean = 0.0, m2 = 0.0;
    for (uint32_t i = 0; i < nstamps; i++) {
        if (!stamps[i])
            continue;
        int64_t v = now - (int64_t)stamps[i];
        if (v < 0) {
            rej++;
            continue;
        }
        if (n == 0 || v < mn)
            mn = v;
        if (n == 0 || v > mx)
            mx = v;
        n++;
        double d = (double)v - mean; /* Welford */
        mean += d / (double)n;
        m2 += d * ((double)v - mean);
        int64_t c = v;
        if (c > highest) {
            sat++;
            c = highest;
        }
        int exp = c ? 63 - __builtin_clzll((uint64_t)c) : -1;
        int64_t shift = exp - ((int64_t)sub_bits - 1);
        if (shift < 0)
            shift = 0;
        int64_t idx = shift * half + (c >> shift);
        if (idx >= 0 && idx < ncounts)
            counts[idx]++;
    }
    out->n = n, out->min = mn, out->max = mx, out->rejected = rej, out->saturated = sat;
    out->mean = mean, out->m2 = m2;
}
