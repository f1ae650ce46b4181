/*
 * BPF_PROG_RUN in live-frames mode (the kernel-speed generator behind `xdpgw blast`): run an XDP
 * program `repeat` times over a frame template; frames it returns XDP_TX for are transmitted on the
 * interface `ifindex` (looked up in the caller's network namespace). One call blocks until done.
 */
#include <errno.h>
#include <stdint.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include "blast.h"
#include "common.h"

#ifndef BPF_F_TEST_XDP_LIVE_FRAMES
#define BPF_F_TEST_XDP_LIVE_FRAMES (1U << 1)
#endif

/* Returns 0 (retval = the program's last verdict) or -errno. batch_size 0: the kernel default (64). */
int xgw_blast_run(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                  uint32_t repeat, uint32_t batch_size, uint32_t *retval)
{
    struct xdp_md ctx = {.data = 0, .data_end = len, .ingress_ifindex = ifindex, .rx_queue_index = queue};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = len, .ctx_in = &ctx,
                .ctx_size_in = sizeof(ctx), .repeat = repeat, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
                .batch_size = batch_size);
    int err = bpf_prog_test_run_opts(prog_fd, &opts);
    if (err)
        return err < 0 ? err : -EINVAL;
    *retval = opts.retval;
    return 0;
}

/* Paced live frames: keep `*sent` (frames sent since t0_ns, CLOCK_MONOTONIC) at `pps` frames per second
 * until it reaches `until`, spinning on the clock between runs. Each run sends what is due (at most
 * max_per_call), so a slow call is caught up by the next, larger one. Every run with more than one frame
 * re-registers the program with the kernel's XDP dispatcher (~24 ms, a synchronize_rcu) unless the program
 * is also attached somewhere: see xgw_xdp_link. Returns 0 or -errno (*sent is exact either way). */
int xgw_blast_paced(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                    uint32_t batch_size, uint64_t t0_ns, double pps, uint64_t until, uint32_t max_per_call,
                    uint64_t *sent)
{
    uint32_t retval;
    while (*sent < until) {
        uint64_t now = (uint64_t)xgw_mono_ns();
        uint64_t due = now > t0_ns ? (uint64_t)((double)(now - t0_ns) * pps / 1e9) + 1 : 1;
        if (due > until)
            due = until;
        if (due <= *sent)
            continue;
        uint64_t n = due - *sent;
        if (n > max_per_call)
            n = max_per_call;
        int err = xgw_blast_run(prog_fd, ifindex, queue, frame, len, (uint32_t)n,
                                batch_size < n ? batch_size : (uint32_t)n, &retval);
        if (err)
            return err;
        *sent += n;
    }
    return 0;
}

/* Attach an XDP program through a bpf_link (generic mode): it goes away with the last fd, so also when
 * the process dies. Returns the link fd or -errno. */
int xgw_xdp_link(int prog_fd, int ifindex)
{
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = 2 /* XDP_FLAGS_SKB_MODE */);
    int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
    return fd < 0 ? -errno : fd;
}
