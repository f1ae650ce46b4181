/*
 * BPF_PROG_RUN in live-frames mode (the kernel-speed generator behind `xdpgw blast`): run an XDP
 * program `repeat` times over a frame template; frames it returns XDP_TX for are transmitted on the
 * interface `ifindex` (looked up in the caller's network namespace). One call blocks until done.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <time.h>
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

/* A paced run sleeps while the next frame is more than XGW_PACE_SLEEP_NS away, until XGW_PACE_SPIN_NS
 * before it, and spins the rest: at low rates (1k-10k frames/s) the generator's CPU is free between
 * frames for whatever shares it (the tick-to-trade bench's venue simulator), instead of a busy loop that
 * the scheduler time-slices against it; at high rates it spins as before. */
#define XGW_PACE_SPIN_NS 20000ULL
#define XGW_PACE_SLEEP_NS 40000ULL

/* Paced live frames: keep `*sent` (frames sent since t0_ns, CLOCK_MONOTONIC) at `pps` frames per second
 * until it reaches `until`, sleeping or spinning on the clock between runs (see XGW_PACE_SPIN_NS). Each run sends what is due (at most
 * max_per_call), so a slow call is caught up by the next, larger one. Every run with more than one frame
 * re-registers the program with the kernel's XDP dispatcher (~24 ms, a synchronize_rcu) unless the program
 * is also attached somewhere: see xgw_xdp_link. Returns 0 or -errno (*sent is exact either way). */
int xgw_blast_paced(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                    uint32_t batch_size, uint64_t t0_ns, double pps, uint64_t until, uint32_t max_per_call,
                    uint64_t *sent)
{
    uint32_t retval;
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* this thread's sleeps end on time (default slack: 50 us) */
    while (*sent < until) {
        uint64_t now = (uint64_t)xgw_mono_ns();
        uint64_t due = now > t0_ns ? (uint64_t)((double)(now - t0_ns) * pps / 1e9) + 1 : 1;
        if (due > until)
            due = until;
        if (due <= *sent) {
            uint64_t next = t0_ns + (uint64_t)((double)*sent * 1e9 / pps); /* when frame *sent+1 is due */
            if (next > now + XGW_PACE_SLEEP_NS) {
                uint64_t wake = next - XGW_PACE_SPIN_NS;
                struct timespec ts = {.tv_sec = (time_t)(wake / 1000000000ULL), .tv_nsec = (long)(wake % 1000000000ULL)};
                if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                    return -EINTR; /* a signal (Ctrl-C): as an interrupted run */
            }
            continue;
        }
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
