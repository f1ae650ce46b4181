/* The latency histogram's hot path (hist.c): one call per burst records `now - stamp` of every non-zero
 * stamp into LatencyHistogram buckets (xdpgw/pipeline/histogram.py). The cffi cdef (xsk_build.py reads
 * it) and #included by hist.c and fastpath.c (the fast path stamps latency with it). */

/* The batch's count/min/max/mean/M2, for the exact running statistics; rejected: stamps after `now`;
 * saturated: values above `highest`, recorded in the top bucket. */
struct xgw_hist_batch { int64_t n, min, max, rejected, saturated; double mean, m2; };

void xgw_hist_since(int64_t *counts, int64_t ncounts, uint32_t sub_bits, int64_t highest, int64_t now,
                    const uint64_t *stamps, uint32_t nstamps, struct xgw_hist_batch *out);
