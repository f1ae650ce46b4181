/* MoldUDP64: split a burst of datagrams into message blocks in one call, then gather by type.
 *
 * xgw_mold_split walks every datagram of a burst: per packet it writes the header (session,
 * sequence, count), the number of complete blocks found, the index of its first message and an
 * error code; per message its packet, byte offset (after the u16 length), length, sequence, type
 * byte and error code. xgw_mold_gather then copies every valid message into one output buffer
 * grouped by type (a counting sort), so Python views each group as a numpy record array.
 */
#include <stdint.h>
#include <string.h>

#define XGW_MOLD_HDR 20
enum {
    XGW_MOLD_OK = 0,
    XGW_MOLD_SHORT_PACKET = 1,
    XGW_MOLD_COUNT_MISMATCH = 2,
    XGW_MOLD_BLOCK_OVERRUN = 3,
    XGW_MOLD_UNKNOWN_TYPE = 4,
    XGW_MOLD_BAD_LENGTH = 5,
};

static inline uint16_t xgw_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint64_t xgw_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

int64_t xgw_mold_split(const uint8_t *buf, const int64_t *offs, const uint32_t *lens, uint32_t npkts,
                       const uint8_t *sizes, char *pkt_session, uint64_t *pkt_seq, uint16_t *pkt_count,
                       uint32_t *pkt_nmsg, int64_t *pkt_first, uint8_t *pkt_err, uint32_t *msg_pkt,
                       int64_t *msg_off, uint16_t *msg_len, uint64_t *msg_seq, uint8_t *msg_type,
                       uint8_t *msg_err, int64_t max_msgs, uint32_t *type_count)
{
    int64_t m = 0;
    for (uint32_t i = 0; i < npkts; i++) {
        const uint8_t *p = buf + offs[i];
        uint32_t len = lens[i];
        pkt_first[i] = m;
        pkt_nmsg[i] = 0;
        if (len < XGW_MOLD_HDR) {
            memset(pkt_session + 10 * (size_t)i, 0, 10);
            pkt_seq[i] = 0;
            pkt_count[i] = 0;
            pkt_err[i] = XGW_MOLD_SHORT_PACKET;
            continue;
        }
        memcpy(pkt_session + 10 * (size_t)i, p, 10);
        uint64_t seq = xgw_be64(p + 10);
        uint16_t count = xgw_be16(p + 18);
        pkt_seq[i] = seq;
        pkt_count[i] = count;
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
            if (m >= max_msgs)
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
                type_count[t]++;
            msg_pkt[m] = i;
            msg_off[m] = offs[i] + pos + 2;
            msg_len[m] = bl;
            msg_seq[m] = seq + found;
            msg_type[m] = t;
            msg_err[m] = e;
            m++;
            found++;
            pos += 2 + (uint32_t)bl;
        }
        uint32_t want = count == 0xFFFF ? 0 : count;
        if (err == XGW_MOLD_OK && found != want)
            err = XGW_MOLD_COUNT_MISMATCH;
        pkt_nmsg[i] = found;
        pkt_err[i] = err;
    }
    return m;
}

void xgw_mold_gather(const uint8_t *buf, const int64_t *msg_off, const uint8_t *msg_type,
                     const uint8_t *msg_err, int64_t nmsg, const uint8_t *sizes,
                     const int64_t *type_byte_start, const int64_t *type_index_start, uint8_t *out,
                     int32_t *order)
{
    int64_t bcur[256], icur[256];
    memcpy(bcur, type_byte_start, sizeof bcur);
    memcpy(icur, type_index_start, sizeof icur);
    for (int64_t i = 0; i < nmsg; i++) {
        if (msg_err[i])
            continue;
        uint8_t t = msg_type[i];
        uint8_t n = sizes[t];
        memcpy(out + bcur[t], buf + msg_off[i], n);
        bcur[t] += n;
        order[icur[t]++] = (int32_t)i;
    }
}
