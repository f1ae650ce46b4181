/*
 * xdpgw blast: the frame generator run by BPF_PROG_RUN in live-frames mode (compiled by BCC,
 * driven by xdpgw/tools/blast.py). Every run gets the same Ethernet/IPv4/UDP/MoldUDP64 template; this
 * program stamps it into the next frame of a real feed and returns XDP_TX, so it leaves through the
 * interface given as ingress_ifindex:
 *   - MoldUDP64 sequence = state[S_NEXT_SEQ], which advances by the frame's message count (gap-free);
 *   - every ITCH timestamp = CLOCK_REALTIME ns since midnight (ktime + state[S_CLOCK_OFFSET]).
 * The UDP checksum of the template is 0 (legal for IPv4), so rewriting the payload keeps it valid.
 * One BPF_PROG_RUN call runs on one CPU, frames one after another: a plain read-modify-write of the
 * sequence counter is exact (one blaster per program instance).
 * Frames that do not come from BPF_PROG_RUN on state[S_IFINDEX] pass untouched: the program may also be
 * attached (generic mode, bpf_link) to the namespace's loopback only to keep it registered with the
 * kernel's XDP dispatcher, which makes runs of a few frames cheap (see xdpgw/_native/blast.c).
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>

#define MOLD_HDR 20
#define MAX_MSGS 64
#define MAX_POS 4096
#define NS_PER_DAY 86400000000000ULL

enum { S_NEXT_SEQ, S_CLOCK_OFFSET, S_FRAMES, S_BAD, S_IFINDEX, S_N };
BPF_ARRAY(blast_state, u64, S_N);

int xgw_blast(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    int k_seq = S_NEXT_SEQ, k_off = S_CLOCK_OFFSET, k_frames = S_FRAMES, k_bad = S_BAD, k_if = S_IFINDEX;
    u64 *ifp = blast_state.lookup(&k_if);
    if (!ifp || ctx->ingress_ifindex != *ifp)
        return XDP_PASS;
    u64 *seqp = blast_state.lookup(&k_seq);
    u64 *offp = blast_state.lookup(&k_off);
    u64 *framesp = blast_state.lookup(&k_frames);
    u64 *badp = blast_state.lookup(&k_bad);
    if (!seqp || !offp || !framesp || !badp)
        return XDP_ABORTED;

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != htons(ETH_P_IP))
        goto bad;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5)
        goto bad;
    u32 pos = sizeof(*eth) + sizeof(*ip) + 8; /* UDP header: 8 bytes */
    u8 *mold = data + pos;
    if ((void *)(mold + MOLD_HDR) > end)
        goto bad;

    u32 count = ((u32)mold[18] << 8) | mold[19];
    u64 seq = *seqp;
    *seqp = seq + count;
    *framesp += 1;
#pragma unroll
    for (int i = 0; i < 8; i++)
        mold[10 + i] = (u8)(seq >> (56 - 8 * i));

    u64 ts = (bpf_ktime_get_ns() + *offp) % NS_PER_DAY;
    pos += MOLD_HDR;
    for (int i = 0; i < MAX_MSGS; i++) {
        if (i >= count || pos > MAX_POS)
            break;
        u8 *b = data + pos;
        if ((void *)(b + 13) > end) /* u16 block length + the 11-byte ITCH header */
            break;
        u32 mlen = ((u32)b[0] << 8) | b[1];
        b[7] = (u8)(ts >> 40);
        b[8] = (u8)(ts >> 32);
        b[9] = (u8)(ts >> 24);
        b[10] = (u8)(ts >> 16);
        b[11] = (u8)(ts >> 8);
        b[12] = (u8)ts;
        pos += 2 + mlen;
    }
    return XDP_TX;
bad:
    *badp += 1;
    return XDP_DROP;
}
