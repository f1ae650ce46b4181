/* Small helpers shared by several .c files of xdpgw/_native (C only, never a cdef): byte order, the
 * Internet checksum, the monotonic clock. static inline, so every hot loop still inlines them although
 * each .c is compiled on its own. */
#ifndef XGW_COMMON_H
#define XGW_COMMON_H
#include <stdint.h>
#include <string.h>
#include <time.h>

static inline uint16_t xgw_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint64_t xgw_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns(), the watchdog heartbeat and time.monotonic_ns(). */
static inline int64_t xgw_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline uint64_t xgw_sum_bytes(uint64_t sum, const uint8_t *p, uint32_t len)
{
    /* One's-complement sum is byte-order independent: add native 32-bit words, fold later. */
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        sum += w;
        p += 2;
        len -= 2;
    }
    if (len) {
        uint16_t w = 0;
        memcpy(&w, p, 1); /* odd tail, padded with a zero byte */
        sum += w;
    }
    return sum;
}

static inline uint16_t xgw_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}
#endif
