/* MoldUDP64: split a burst of datagrams into message blocks in one call, then gather by type.
 *
 * xgw_mold_split walks every datagram of a burst: per packet it writes the header (session,
 * sequence, count), the number of complete blocks found and an error code; per message its packet,
 * byte offset (after the u16 length), length, sequence, type byte and error code. It also writes the
 * burst's bookkeeping into ``s->info`` (see XGW_MI_* in mold.h): message counts, error counts, the present
 * types with their slots in the gather output, and the facts the sequencer's in-order fast path needs
 * (one session, no short packet, every packet starting where the previous one ended).
 * xgw_mold_gather then copies every valid message into one output buffer grouped by type (a counting
 * sort), so Python views each group as a numpy record array.
 * All scratch pointers live in one struct the caller sets up once (no per-call pointer casts).
 */
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "mold.h"

int64_t xgw_mold_split(struct xgw_mold_scratch *s, const uint8_t *buf, const int64_t *offs,
                       const uint32_t *lens, uint32_t npkts)
{
    const uint8_t *sizes = s->sizes;
    int64_t *info = s->info;
    uint32_t tc[256];
    int64_t m = 0, pkt_errs[8] = {0}, msg_errs[8] = {0}, hb = 0, eos = 0;
    int simple = 1;
    uint64_t expect = 0;
    memset(tc, 0, sizeof tc);
    for (uint32_t i = 0; i < npkts; i++) {
        const uint8_t *p = buf + offs[i];
        uint32_t len = lens[i];
        char *sess = s->pkt_session + 10 * (size_t)i;
        s->pkt_nmsg[i] = 0;
        if (len < XGW_MOLD_HDR) {
            memset(sess, 0, 10);
            s->pkt_seq[i] = 0;
            s->pkt_count[i] = 0;
            s->pkt_err[i] = XGW_MOLD_SHORT_PACKET;
            pkt_errs[XGW_MOLD_SHORT_PACKET]++;
            simple = 0;
            continue;
        }
        memcpy(sess, p, 10);
        uint64_t seq = xgw_be64(p + 10);
        uint16_t count = xgw_be16(p + 18);
        s->pkt_seq[i] = seq;
        s->pkt_count[i] = count;
        uint8_t err = XGW_MOLD_OK;
        uint32_t pos = XGW_MOLD_HDR, found = 0;
        while (pos < len) {
            if (pos + 2 > len) {
                err = XGW_MOLD_BLOCK_OVERRUN;
                break;
            }
            uint16_t bl = xgw_be16(p + pos);
            if ((uint64_t)pos + 2 + bl > len) {
                err = XGW_MOLD_BLOCK_OVERRUN;
                break;
            }
            if (m >= s->cap_msgs)
                return -1;
            uint8_t t = bl ? p[pos + 2] : 0;
            uint8_t e = XGW_MOLD_OK;
            if (!bl)
                e = XGW_MOLD_BAD_LENGTH;
            else if (!sizes[t])
                e = XGW_MOLD_UNKNOWN_TYPE;
            else if (sizes[t] != bl)
                e = XGW_MOLD_BAD_LENGTH;
            else
                tc[t]++;
            msg_errs[e]++;
            s->msg_pkt[m] = i;
            s->msg_off[m] = offs[i] + pos + 2;
            s->msg_len[m] = bl;
            s->msg_seq[m] = seq + found;
            s->msg_type[m] = t;
            s->msg_err[m] = e;
            m++;
            found++;
            pos += 2 + (uint32_t)bl;
        }
        uint32_t want = count == 0xFFFF ? 0 : count;
        if (err == XGW_MOLD_OK && found != want)
            err = XGW_MOLD_COUNT_MISMATCH;
        s->pkt_nmsg[i] = found;
        s->pkt_err[i] = err;
        pkt_errs[err]++;
        hb += count == 0 && err == XGW_MOLD_OK;
        eos += count == 0xFFFF;
        if (i == 0)
            info[XGW_MI_FIRST] = (int64_t)seq;
        else if (seq != expect || memcmp(sess, s->pkt_session, 10))
            simple = 0;
        expect = seq + found;
    }
    int64_t nvalid = 0, nbytes = 0, ntypes = 0;
    int64_t *ty = info + XGW_MI_TYPES;
    for (int t = 0; t < 256; t++) {
        s->bstart[t] = nbytes;
        s->istart[t] = nvalid;
        if (!tc[t])
            continue;
        ty[0] = t;
        ty[1] = tc[t];
        ty[2] = nbytes;
        ty[3] = nvalid;
        ty += 4;
        ntypes++;
        nvalid += tc[t];
        nbytes += (int64_t)tc[t] * sizes[t];
    }
    info[XGW_MI_NMSG] = m;
    info[XGW_MI_NVALID] = nvalid;
    info[XGW_MI_OUT_BYTES] = nbytes;
    info[XGW_MI_NTYPES] = ntypes;
    info[XGW_MI_END] = (int64_t)expect;
    info[XGW_MI_SIMPLE] = simple && npkts > 0;
    info[XGW_MI_HEARTBEATS] = hb;
    info[XGW_MI_EOS] = eos;
    info[XGW_MI_ERRORS] = nvalid != m || pkt_errs[XGW_MOLD_OK] != (int64_t)npkts;
    memcpy(info + XGW_MI_PKT_ERR, pkt_errs, sizeof pkt_errs);
    memcpy(info + XGW_MI_MSG_ERR, msg_errs, sizeof msg_errs);
    return m;
}

void xgw_mold_gather(struct xgw_mold_scratch *s, const uint8_t *buf, uint8_t *out, int32_t *order)
{
    int64_t bcur[256], icur[256];
    const uint8_t *sizes = s->sizes;
    int64_t nmsg = s->info[XGW_MI_NMSG];
    memcpy(bcur, s->bstart, sizeof bcur);
    memcpy(icur, s->istart, sizeof icur);
    for (int64_t i = 0; i < nmsg; i++) {
        if (s->msg_err[i])
            continue;
        uint8_t t = s->msg_type[i];
        uint8_t n = sizes[t];
        memcpy(out + bcur[t], buf + s->msg_off[i], n);
        bcur[t] += n;
        order[icur[t]++] = (int32_t)i;
    }
}
