/* The AF_XDP socket's insides, shared by xsk.c (open, receive) and frames.c (send); C only, never a
 * cdef: Python sees struct xgw_xsk as opaque (xsk.h). The rings are driven through libxdp's ring API
 * (<xdp/xsk.h>) only. */
#ifndef XGW_XSK_INTERNAL_H
#define XGW_XSK_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <xdp/xsk.h>

#include "xsk.h"

struct xgw_xsk {
    struct xsk_ring_prod fq, tx;
    struct xsk_ring_cons cq, rx;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    uint8_t *area;
    size_t area_size;
    int hugepages, zerocopy, fd;
    uint32_t frame_size, nframes, rx_frames;
    uint32_t tx_size;             /* TX ring descriptors (0: no TX ring) */
    uint64_t *loaned;
    uint32_t nloaned;
    uint64_t *tx_free;
    uint32_t ntx_free;
    volatile uint64_t *heartbeat; /* our queue's slot in the XDP program's mmapped heartbeat map */
    int verify_csum;              /* check UDP checksums in xgw_rx_burst (the XDP program does not) */
    struct xgw_xsk_stats st;
};

/* Move completed TX frames (completion ring) back to the free stack (xsk.c). */
__attribute__((visibility("hidden"))) void xgw_tx_reclaim(struct xgw_xsk *s);
#endif
