/*
 * BPF_PROG_RUN in live-frames mode (the kernel-speed generator behind `xdpgw blast`): run an XDP
 * program `repeat` times over a frame template; frames it returns XDP_TX for are transmitted on the
 * interface `ifindex` (looked up in the caller's network namespace). One call blocks until done.
 */
#include <errno.h>
#include <stdint.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

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
