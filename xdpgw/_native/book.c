/* Order-book engine (see book.h): one call per burst applies ITCH messages to L3 books.
 *
 * Books live in a flat array indexed by stock locate. Each side is a sorted array of (key, level)
 * with the best level at the back (bids keyed by price, asks by ~price), so the usual add or delete
 * near the touch scans a few entries from the back. Levels and orders come from pools with free
 * lists (32-bit indices, so growing a pool never invalidates a link); a level keeps its orders in a
 * FIFO chain (an order joins at the back). Order references map to orders through an open-addressing
 * hash table with backward-shift deletion, so memory is bounded by the live orders. After every
 * message that changes a book its top is compared with the last one reported: a change writes one
 * BBO record. Faults are counted by cause and flagged on the book, never fatal: an unknown reference
 * changes nothing, an execution or cancel larger than the order removes it, an add onto a live
 * reference replaces it, an add with zero shares or price is rejected.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "book.h"

#define NIL 0xFFFFFFFFu
#define NBOOKS 65536
#define EMPTY_REF UINT64_MAX

struct order {
    uint64_t ref;
    uint32_t shares, price, level, prev, next;
    uint16_t locate;
    uint8_t ask, pad;
};

struct level {
    uint64_t shares;
    uint32_t price, count, head, tail;
};

struct hslot {
    uint64_t ref;  /* EMPTY_REF when free */
    uint32_t val, pad;
};

struct side {
    uint32_t *key, *lv;
    uint32_t n, cap;
};

struct book {
    struct side s[2];  /* 0 bids, 1 asks */
    uint64_t top_bsz, top_asz;
    uint32_t top_bp, top_ap, top_bc, top_ac;
    uint32_t orders;
    uint8_t flags, crossed, active, want;
    char state;
    char symbol[8];
};

struct xbk_engine {
    uint8_t sizes[256];
    struct book *books;
    struct order *ord;
    uint32_t ocap, ofree, olive;
    struct level *lvl;
    uint32_t lcap, lfree, llive;
    struct hslot *hash;
    uint64_t hmask, hcount;
    uint32_t hshift;
    char *wanted;      /* nwant symbols of 8 bytes; nwant == 0: every symbol */
    uint32_t nwant;
    const uint8_t **ptr;  /* xbk_apply_grouped: each message's record */
    int64_t nptr;
    uint16_t *active;  /* locates of books that have been used, in first-use order */
    uint32_t nactive;
    uint64_t messages, nbbo, ntrades, gaps;
    uint64_t errors[8];
    int32_t suspect;
    char last_event;
};

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline uint64_t be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
static inline uint64_t ts48(const uint8_t *p) { return ((uint64_t)be16(p + 5) << 32) | be32(p + 7); }

/* --- pools ------------------------------------------------------------------------------------ */
/* Double a pool of ``size``-byte items whose free list runs through the u32 at ``link``. */
static void *grow_pool(void *pool, uint32_t *cap, uint32_t *free_head, size_t size, size_t link)
{
    uint32_t n = *cap ? *cap * 2 : 1024;
    uint8_t *p = realloc(pool, (size_t)n * size);
    if (!p)
        return NULL;
    for (uint32_t i = *cap; i < n; i++) {
        uint32_t next = i + 1 < n ? i + 1 : *free_head;
        memcpy(p + (size_t)i * size + link, &next, sizeof next);
    }
    *free_head = *cap;
    *cap = n;
    return p;
}

static int grow_orders(struct xbk_engine *e)
{
    void *p = grow_pool(e->ord, &e->ocap, &e->ofree, sizeof *e->ord, offsetof(struct order, next));
    if (!p)
        return -1;
    e->ord = p;
    return 0;
}

static int grow_levels(struct xbk_engine *e)
{
    void *p = grow_pool(e->lvl, &e->lcap, &e->lfree, sizeof *e->lvl, offsetof(struct level, head));
    if (!p)
        return -1;
    e->lvl = p;
    return 0;
}

/* --- order reference hash ------------------------------------------------------------------------ */
static inline uint64_t home(const struct xbk_engine *e, uint64_t ref)
{
    return (ref * 0x9E3779B97F4A7C15ull) >> e->hshift;
}

static int hash_init(struct xbk_engine *e, uint32_t bits)
{
    uint64_t cap = 1ull << bits;
    struct hslot *h = malloc(cap * sizeof *h);
    if (!h)
        return -1;
    for (uint64_t i = 0; i < cap; i++)
        h[i].ref = EMPTY_REF;
    e->hash = h;
    e->hmask = cap - 1;
    e->hshift = 64 - bits;
    e->hcount = 0;
    return 0;
}

static inline uint32_t hfind(const struct xbk_engine *e, uint64_t ref)
{
    uint64_t i = home(e, ref);
    for (;;) {
        uint64_t k = e->hash[i].ref;
        if (k == ref)
            return e->hash[i].val;
        if (k == EMPTY_REF)
            return NIL;
        i = (i + 1) & e->hmask;
    }
}

static inline void hput(struct xbk_engine *e, uint64_t ref, uint32_t val)
{
    uint64_t i = home(e, ref);
    while (e->hash[i].ref != EMPTY_REF)
        i = (i + 1) & e->hmask;
    e->hash[i].ref = ref;
    e->hash[i].val = val;
    e->hcount++;
}

static int hash_grow(struct xbk_engine *e)
{
    struct hslot *old = e->hash;
    uint64_t oldcap = e->hmask + 1, oldmask = e->hmask, count = e->hcount;
    uint32_t oldshift = e->hshift;
    if (hash_init(e, 64 - e->hshift + 1) < 0) {
        e->hash = old, e->hmask = oldmask, e->hshift = oldshift, e->hcount = count;
        return -1;
    }
    for (uint64_t i = 0; i < oldcap; i++)
        if (old[i].ref != EMPTY_REF)
            hput(e, old[i].ref, old[i].val);
    free(old);
    return 0;
}

static inline void hdel(struct xbk_engine *e, uint64_t ref)
{
    uint64_t i = home(e, ref), m = e->hmask;
    while (e->hash[i].ref != ref) {
        if (e->hash[i].ref == EMPTY_REF)
            return;
        i = (i + 1) & m;
    }
    for (uint64_t j = i;;) {  /* backward shift: no tombstones, probe chains stay short */
        j = (j + 1) & m;
        uint64_t k = e->hash[j].ref;
        if (k == EMPTY_REF)
            break;
        uint64_t h = home(e, k);
        if (((j - h) & m) >= ((j - i) & m)) {
            e->hash[i] = e->hash[j];
            i = j;
        }
    }
    e->hash[i].ref = EMPTY_REF;
    e->hcount--;
}

/* --- books ---------------------------------------------------------------------------------------- */
static void activate(struct xbk_engine *e, uint16_t loc)
{
    struct book *b = &e->books[loc];
    if (!b->active) {
        b->active = 1;
        e->active[e->nactive++] = loc;
    }
}

static int wanted(const struct xbk_engine *e, const uint8_t *sym)
{
    if (!e->nwant)
        return 1;
    for (uint32_t i = 0; i < e->nwant; i++)
        if (!memcmp(e->wanted + 8 * i, sym, 8))
            return 1;
    return 0;
}

/* The level for ``price`` on side ``s`` (made when missing), or NIL when out of memory. */
static uint32_t level_at(struct xbk_engine *e, struct side *s, uint32_t key, uint32_t price)
{
    uint32_t i = s->n;
    while (i > 0 && s->key[i - 1] > key)
        i--;
    if (i > 0 && s->key[i - 1] == key)
        return s->lv[i - 1];
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 16;
        uint32_t *k = realloc(s->key, cap * sizeof *k);
        if (!k)
            return NIL;
        s->key = k;
        uint32_t *v = realloc(s->lv, cap * sizeof *v);
        if (!v)
            return NIL;
        s->lv = v;
        s->cap = cap;
    }
    if (e->lfree == NIL && grow_levels(e) < 0)
        return NIL;
    uint32_t li = e->lfree;
    struct level *l = &e->lvl[li];
    e->lfree = l->head;
    l->shares = 0;
    l->price = price;
    l->count = 0;
    l->head = l->tail = NIL;
    e->llive++;
    memmove(s->key + i + 1, s->key + i, (s->n - i) * sizeof *s->key);
    memmove(s->lv + i + 1, s->lv + i, (s->n - i) * sizeof *s->lv);
    s->key[i] = key;
    s->lv[i] = li;
    s->n++;
    return li;
}

static inline uint32_t side_key(int ask, uint32_t price) { return ask ? ~price : price; }

static void drop_level(struct xbk_engine *e, struct side *s, uint32_t key, uint32_t li)
{
    uint32_t i = s->n;
    while (i > 0 && s->key[i - 1] != key)
        i--;
    if (i > 0) {
        i--;
        memmove(s->key + i, s->key + i + 1, (s->n - i - 1) * sizeof *s->key);
        memmove(s->lv + i, s->lv + i + 1, (s->n - i - 1) * sizeof *s->lv);
        s->n--;
    }
    e->lvl[li].head = e->lfree;
    e->lfree = li;
    e->llive--;
}

static void add_order(struct xbk_engine *e, uint16_t loc, uint64_t ref, int ask, uint32_t shares, uint32_t price)
{
    struct book *b = &e->books[loc];
    if ((e->hcount + 1) * 2 > e->hmask + 1 && hash_grow(e) < 0)
        return;
    if (e->ofree == NIL && grow_orders(e) < 0)
        return;
    uint32_t li = level_at(e, &b->s[ask], side_key(ask, price), price);
    if (li == NIL)
        return;
    uint32_t oi = e->ofree;
    struct order *o = &e->ord[oi];
    e->ofree = o->next;
    struct level *l = &e->lvl[li];
    o->ref = ref;
    o->shares = shares;
    o->price = price;
    o->level = li;
    o->locate = loc;
    o->ask = (uint8_t)ask;
    o->prev = l->tail;
    o->next = NIL;
    if (l->tail != NIL)
        e->ord[l->tail].next = oi;
    else
        l->head = oi;
    l->tail = oi;
    l->shares += shares;
    l->count++;
    hput(e, ref, oi);
    b->orders++;
    e->olive++;
}

static void remove_order(struct xbk_engine *e, uint32_t oi)
{
    struct order *o = &e->ord[oi];
    struct book *b = &e->books[o->locate];
    uint32_t li = o->level;
    struct level *l = &e->lvl[li];
    if (o->prev != NIL)
        e->ord[o->prev].next = o->next;
    else
        l->head = o->next;
    if (o->next != NIL)
        e->ord[o->next].prev = o->prev;
    else
        l->tail = o->prev;
    l->shares -= o->shares;
    if (--l->count == 0)
        drop_level(e, &b->s[o->ask], side_key(o->ask, o->price), li);
    hdel(e, o->ref);
    b->orders--;
    e->olive--;
    o->next = e->ofree;
    e->ofree = oi;
}

/* Take ``n`` shares off order ``oi`` (the whole order when ``n`` reaches its size). */
static inline void reduce(struct xbk_engine *e, uint32_t oi, uint32_t n)
{
    struct order *o = &e->ord[oi];
    if (n >= o->shares) {
        remove_order(e, oi);
        return;
    }
    o->shares -= n;
    e->lvl[o->level].shares -= n;
}

static inline void error(struct xbk_engine *e, struct book *b, int cause, uint8_t flag)
{
    e->errors[cause]++;
    b->flags |= flag;
}

static void unknown_order(struct xbk_engine *e, uint16_t loc)
{
    struct book *b = &e->books[loc];
    error(e, b, XBK_ERR_UNKNOWN_ORDER, XBK_FLAG_UNKNOWN_ORDER);
    if (e->gaps) {  /* after a gap: this book lost messages; the others are presumed whole */
        e->suspect = 0;
        b->flags |= XBK_FLAG_STALE;
    }
    activate(e, loc);
}

/* Compare the top of ``loc`` with the last one reported; write a BBO record when it changed. */
static inline void check_top(struct xbk_engine *e, uint16_t loc, const uint8_t *p, uint64_t seq, struct xbk_out *out)
{
    struct book *b = &e->books[loc];
    uint64_t bsz = 0, asz = 0;
    uint32_t bp = 0, ap = 0, bc = 0, ac = 0;
    if (b->s[0].n) {
        const struct level *l = &e->lvl[b->s[0].lv[b->s[0].n - 1]];
        bsz = l->shares, bp = l->price, bc = l->count;
    }
    if (b->s[1].n) {
        const struct level *l = &e->lvl[b->s[1].lv[b->s[1].n - 1]];
        asz = l->shares, ap = l->price, ac = l->count;
    }
    if (bp == b->top_bp && ap == b->top_ap && bsz == b->top_bsz && asz == b->top_asz && bc == b->top_bc &&
        ac == b->top_ac)
        return;
    b->top_bp = bp, b->top_ap = ap, b->top_bsz = bsz, b->top_asz = asz, b->top_bc = bc, b->top_ac = ac;
    if (bp && ap && bp >= ap) {
        if (!b->crossed) {
            b->crossed = 1;
            error(e, b, XBK_ERR_CROSSED_BOOK, XBK_FLAG_CROSSED);
        }
    } else if (b->crossed) {
        b->crossed = 0;
        b->flags &= (uint8_t)~XBK_FLAG_CROSSED;
    }
    struct xbk_bbo *r = &out->bbo[out->nbbo++];
    r->seq = seq;
    r->ts = ts48(p);
    r->bid_size = bsz, r->ask_size = asz, r->bid_price = bp, r->ask_price = ap, r->bid_count = bc, r->ask_count = ac;
    r->locate = loc;
    r->flags = b->flags | (e->suspect ? XBK_FLAG_STALE : 0);
    memcpy(r->pad, "\0\0\0\0\0", 5);
    memcpy(r->symbol, b->symbol, 8);
}

static inline struct xbk_trade *trade(struct xbk_engine *e, uint16_t loc, const uint8_t *p, uint64_t seq,
                                      struct xbk_out *out)
{
    struct xbk_trade *t = &out->trades[out->ntrades++];
    t->seq = seq;
    t->ts = ts48(p);
    t->locate = loc;
    t->kind = (char)p[0];
    memcpy(t->symbol, e->books[loc].symbol, 8);
    return t;
}

/* Add (A/F) or the new half of a replace (U): an add onto a live reference replaces that order. */
static void add_checked(struct xbk_engine *e, uint16_t loc, uint64_t ref, int ask, uint32_t shares, uint32_t price,
                        const uint8_t *p, uint64_t seq, struct xbk_out *out)
{
    struct book *b = &e->books[loc];
    uint32_t old = hfind(e, ref);
    if (old != NIL) {
        uint16_t oloc = e->ord[old].locate;
        error(e, b, XBK_ERR_DUPLICATE_ORDER, XBK_FLAG_DUPLICATE_ORDER);
        remove_order(e, old);
        if (oloc != loc)
            check_top(e, oloc, p, seq, out);
    }
    if (!shares || !price) {
        error(e, b, XBK_ERR_REJECTED_ORDER, XBK_FLAG_REJECTED_ORDER);
        return;
    }
    add_order(e, loc, ref, ask, shares, price);
}

/* E, C, X, D or U on the live order ``oi``. */
static inline void modify(struct xbk_engine *e, uint8_t t, const uint8_t *p, uint32_t oi, uint64_t seq,
                          struct xbk_out *out)
{
    struct order *o = &e->ord[oi];
    uint16_t oloc = o->locate;
    uint32_t n = be32(p + 19);
    switch (t) {
    case 'E':
    case 'C':
        if (n > o->shares)
            error(e, &e->books[oloc], XBK_ERR_OVERSIZED_EXECUTION, XBK_FLAG_OVERSIZED_EXECUTION);
        if (t == 'E' || p[31] == 'Y') {
            struct xbk_trade *r = trade(e, oloc, p, seq, out);
            r->shares = n;
            r->order_ref = o->ref;
            r->match = be64(p + 23);
            r->price = t == 'E' ? o->price : be32(p + 32);
            r->side = o->ask ? 'S' : 'B';
        }
        reduce(e, oi, n);
        break;
    case 'X':
        if (n > o->shares)
            error(e, &e->books[oloc], XBK_ERR_OVERSIZED_CANCEL, XBK_FLAG_OVERSIZED_CANCEL);
        reduce(e, oi, n);
        break;
    case 'D':
        remove_order(e, oi);
        break;
    default: { /* U: the old order leaves, the new one joins the back of its level */
        int ask = o->ask;
        remove_order(e, oi);
        add_checked(e, oloc, be64(p + 19), ask, be32(p + 27), be32(p + 31), p, seq, out);
    }
    }
    check_top(e, oloc, p, seq, out);
}

static inline void apply_one(struct xbk_engine *e, const uint8_t *p, uint8_t t, uint64_t seq, struct xbk_out *out)
{
    uint16_t loc = be16(p + 1);
    struct book *b = &e->books[loc];
    switch (t) {
    case 'A':
    case 'F':
        if (!b->want)
            return;
        activate(e, loc);
        add_checked(e, loc, be64(p + 11), p[19] == 'S', be32(p + 20), be32(p + 32), p, seq, out);
        check_top(e, loc, p, seq, out);
        return;
    case 'E':
    case 'C':
    case 'X':
    case 'D':
    case 'U': {
        if (!b->want)
            return;
        uint32_t oi = hfind(e, be64(p + 11));
        if (oi == NIL)
            unknown_order(e, loc);
        else
            modify(e, t, p, oi, seq, out);
        return;
    }
    case 'P':
        if (b->want) {
            struct xbk_trade *r = trade(e, loc, p, seq, out);
            r->order_ref = be64(p + 11);
            r->side = (char)p[19];
            r->shares = be32(p + 20);
            r->price = be32(p + 32);
            r->match = be64(p + 36);
        }
        return;
    case 'Q':
        if (b->want) {
            struct xbk_trade *r = trade(e, loc, p, seq, out);
            r->order_ref = 0;
            r->side = ' ';
            r->shares = be64(p + 11);
            r->price = be32(p + 27);
            r->match = be64(p + 31);
        }
        return;
    case 'R':
        memcpy(b->symbol, p + 11, 8);
        b->want = (uint8_t)wanted(e, p + 11);
        if (b->want)
            activate(e, loc);
        return;
    case 'H':
        if (b->want)
            b->state = (char)p[19];
        return;
    case 'S':
        e->last_event = (char)p[11];
        return;
    default:
        return;
    }
}

/* --- API -------------------------------------------------------------------------------------------- */
static void clear(struct xbk_engine *e)
{
    for (uint32_t i = 0; i < NBOOKS; i++) {
        struct book *b = &e->books[i];
        free(b->s[0].key), free(b->s[0].lv), free(b->s[1].key), free(b->s[1].lv);
        memset(b, 0, sizeof *b);
        b->state = ' ';
        memset(b->symbol, ' ', 8);
        b->want = e->nwant == 0;
    }
    free(e->ord), free(e->lvl), free(e->hash);
    e->ord = NULL, e->lvl = NULL, e->hash = NULL;
    e->ocap = e->olive = e->lcap = e->llive = 0;
    e->ofree = e->lfree = NIL;
    e->nactive = 0;
    e->suspect = 0;
}

static int prepare(struct xbk_engine *e, uint32_t orders_hint)
{
    uint32_t bits = 10;
    while ((1ull << bits) < 2ull * orders_hint && bits < 40)
        bits++;
    if (hash_init(e, bits) < 0)
        return -1;
    while (e->ocap < orders_hint)
        if (grow_orders(e) < 0)
            return -1;
    while (e->lcap < orders_hint / 4 + 1024)
        if (grow_levels(e) < 0)
            return -1;
    return 0;
}

struct xbk_engine *xbk_new(const uint8_t *sizes, uint32_t orders_hint)
{
    struct xbk_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->sizes, sizes, 256);
    e->books = calloc(NBOOKS, sizeof *e->books);
    e->active = calloc(NBOOKS, sizeof *e->active);
    e->last_event = ' ';
    if (!e->books || !e->active) {
        xbk_free(e);
        return NULL;
    }
    clear(e);
    if (prepare(e, orders_hint) < 0) {
        xbk_free(e);
        return NULL;
    }
    return e;
}

void xbk_free(struct xbk_engine *e)
{
    if (!e)
        return;
    if (e->books)
        clear(e);
    free(e->books);
    free(e->active);
    free(e->wanted);
    free(e->ptr);
    free(e);
}

void xbk_reset(struct xbk_engine *e)
{
    uint32_t hint = e->ocap;
    clear(e);
    prepare(e, hint);
}

void xbk_want(struct xbk_engine *e, const char *symbols, uint32_t n)
{
    free(e->wanted);
    e->wanted = NULL;
    e->nwant = 0;
    if (n) {
        e->wanted = malloc(8ull * n);
        if (e->wanted) {
            memcpy(e->wanted, symbols, 8ull * n);
            e->nwant = n;
        }
    }
    for (uint32_t i = 0; i < NBOOKS; i++) {
        struct book *b = &e->books[i];
        b->want = (uint8_t)(e->nwant == 0 || (b->symbol[0] != ' ' && wanted(e, (const uint8_t *)b->symbol)));
    }
}

/* The messages ahead are fetched into the cache in three steps while the ones before them are applied
 * (the lookups are the cache misses): AHEAD places on, the hash slot and the book; AHEAD/2 on, the
 * order (its slot is cached now) or the end of the side an add joins; AHEAD/4 on, the order's level
 * and the end of its side. */
#define AHEAD 16
static inline void prefetch_side(const struct book *b, int ask)
{
    const struct side *s = &b->s[ask];
    if (s->n) {
        __builtin_prefetch(&s->key[s->n - 1]);
        __builtin_prefetch(&s->lv[s->n - 1]);
    }
}

static inline void prefetch_msg(const struct xbk_engine *e, const uint8_t *p, int step)
{
    uint8_t t = p[0];
    if (t == 'A' || t == 'F') {  /* a new reference: its slot is probed (live already?) then filled */
        const struct book *b = &e->books[be16(p + 1)];
        if (step == 0) {
            __builtin_prefetch(&e->hash[home(e, be64(p + 11))]);
            __builtin_prefetch(b);
        } else if (step == 1) {
            prefetch_side(b, p[19] == 'S');
        }
    } else if (t == 'E' || t == 'D' || t == 'X' || t == 'U' || t == 'C') {
        uint64_t ref = be64(p + 11);
        if (step == 0) {
            __builtin_prefetch(&e->hash[home(e, ref)]);
            if (t == 'U')
                __builtin_prefetch(&e->hash[home(e, be64(p + 19))]);
            return;
        }
        uint32_t oi = hfind(e, ref);
        if (oi == NIL)
            return;
        if (step == 1) {
            __builtin_prefetch(&e->ord[oi]);
        } else {
            const struct order *o = &e->ord[oi];
            __builtin_prefetch(&e->lvl[o->level]);
            prefetch_side(&e->books[o->locate], o->ask);
        }
    }
}

/* Messages ``p[i]`` (types ``type[i]``, NULL: read from the message) in order, with prefetching. */
static void apply_run(struct xbk_engine *e, const uint8_t *const *p, const uint8_t *type, const uint8_t *err,
                      const uint64_t *seq, uint64_t seq0, int64_t n, struct xbk_out *out)
{
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n && !(err && err[i + AHEAD]))
            prefetch_msg(e, p[i + AHEAD], 0);
        if (i + AHEAD / 2 < n && !(err && err[i + AHEAD / 2]))
            prefetch_msg(e, p[i + AHEAD / 2], 1);
        if (i + AHEAD / 4 < n && !(err && err[i + AHEAD / 4]))
            prefetch_msg(e, p[i + AHEAD / 4], 2);
        if (err && err[i])
            continue;
        apply_one(e, p[i], type ? type[i] : p[i][0], seq ? seq[i] : seq0 + (uint64_t)i, out);
    }
}

#define RUN 512

int64_t xbk_apply(struct xbk_engine *e, const uint8_t *raw, const int64_t *off, const uint8_t *type,
                  const uint8_t *err, const uint64_t *seq, int64_t n, struct xbk_out *out)
{
    const uint8_t *p[RUN];
    out->nbbo = out->ntrades = out->bad = 0;
    if (n > out->cap)
        n = out->cap;
    for (int64_t a = 0; a < n; a += RUN) {
        int64_t k = n - a < RUN ? n - a : RUN;
        for (int64_t i = 0; i < k; i++)
            p[i] = raw + off[a + i];
        apply_run(e, p, type + a, err ? err + a : NULL, seq + a, 0, k, out);
    }
    out->messages = n;
    e->messages += (uint64_t)n;
    e->nbbo += (uint64_t)out->nbbo;
    e->ntrades += (uint64_t)out->ntrades;
    return n;
}

int64_t xbk_apply_grouped(struct xbk_engine *e, const uint8_t *raw, const int32_t *grouped, int64_t nvalid,
                          const uint8_t *type, const uint8_t *err, const uint64_t *seq, int64_t n,
                          struct xbk_out *out)
{
    if (n > e->nptr) {
        const uint8_t **q = realloc(e->ptr, (size_t)n * sizeof *q);
        if (!q)
            return -1;
        e->ptr = q;
        e->nptr = n;
    }
    const uint8_t *at = raw;
    for (int64_t k = 0; k < nvalid; k++) {  /* record k (type groups, message order within) is message grouped[k] */
        int32_t i = grouped[k];
        e->ptr[i] = at;
        at += e->sizes[type[i]];
    }
    out->nbbo = out->ntrades = out->bad = 0;
    if (n > out->cap)
        n = out->cap;
    apply_run(e, e->ptr, type, err, seq, 0, n, out);
    out->messages = n;
    e->messages += (uint64_t)n;
    e->nbbo += (uint64_t)out->nbbo;
    e->ntrades += (uint64_t)out->ntrades;
    return n;
}

int64_t xbk_apply_stream(struct xbk_engine *e, const uint8_t *buf, int64_t len, uint64_t first_seq,
                         struct xbk_out *out)
{
    int64_t pos = 0, m = 0, bad = 0;
    const uint8_t *p[RUN];
    uint8_t err[RUN];
    out->nbbo = out->ntrades = 0;
    for (;;) {  /* frame up to RUN messages, then apply them (with prefetching) */
        int64_t k = 0;
        while (k < RUN && pos + 2 <= len && m + k < out->cap) {
            uint32_t l = be16(buf + pos);
            if (l == 0) {  /* end-of-session marker of a daily file */
                pos += 2;
                continue;
            }
            if (pos + 2 + l > len)
                break;
            p[k] = buf + pos + 2;
            err[k] = e->sizes[p[k][0]] != l;
            bad += err[k];
            k++;
            pos += 2 + l;
        }
        if (!k)
            break;
        apply_run(e, p, NULL, err, NULL, first_seq + (uint64_t)m, k, out);
        m += k;
    }
    out->messages = m;
    out->bad = bad;
    e->messages += (uint64_t)(m - bad);
    e->nbbo += (uint64_t)out->nbbo;
    e->ntrades += (uint64_t)out->ntrades;
    return pos;
}

void xbk_gap(struct xbk_engine *e)
{
    e->gaps++;
    e->suspect = 1;
}

int32_t xbk_locate(struct xbk_engine *e, const char *symbol)
{
    for (uint32_t i = 0; i < e->nactive; i++)
        if (!memcmp(e->books[e->active[i]].symbol, symbol, 8))
            return e->active[i];
    return -1;
}

int32_t xbk_depth(struct xbk_engine *e, uint16_t locate, int32_t ask, struct xbk_level *out, int32_t max)
{
    const struct side *s = &e->books[locate].s[ask ? 1 : 0];
    int32_t k = 0;
    for (uint32_t i = s->n; i > 0 && k < max; i--, k++) {
        const struct level *l = &e->lvl[s->lv[i - 1]];
        out[k].shares = l->shares;
        out[k].price = l->price;
        out[k].count = l->count;
    }
    return k;
}

int64_t xbk_orders(struct xbk_engine *e, uint16_t locate, struct xbk_order *out, int64_t max)
{
    int64_t k = 0;
    for (int side = 0; side < 2; side++) {
        const struct side *s = &e->books[locate].s[side];
        for (uint32_t i = s->n; i > 0; i--)
            for (uint32_t oi = e->lvl[s->lv[i - 1]].head; oi != NIL && k < max; oi = e->ord[oi].next, k++) {
                const struct order *o = &e->ord[oi];
                out[k].ref = o->ref;
                out[k].price = o->price;
                out[k].shares = o->shares;
                out[k].side = side ? 'S' : 'B';
                memset(out[k].pad, 0, sizeof out[k].pad);
            }
    }
    return k;
}

static void fill_top(const struct xbk_engine *e, uint16_t loc, struct xbk_top *t)
{
    const struct book *b = &e->books[loc];
    memset(t, 0, sizeof *t);
    if (b->s[0].n) {
        const struct level *l = &e->lvl[b->s[0].lv[b->s[0].n - 1]];
        t->bid_size = l->shares, t->bid_price = l->price, t->bid_count = l->count;
    }
    if (b->s[1].n) {
        const struct level *l = &e->lvl[b->s[1].lv[b->s[1].n - 1]];
        t->ask_size = l->shares, t->ask_price = l->price, t->ask_count = l->count;
    }
    t->orders = b->orders;
    t->levels = b->s[0].n + b->s[1].n;
    t->locate = loc;
    t->flags = b->flags | (e->suspect ? XBK_FLAG_STALE : 0);
    t->state = b->state;
    memcpy(t->symbol, b->symbol, 8);
}

int64_t xbk_tops(struct xbk_engine *e, struct xbk_top *out, int64_t max)
{
    int64_t k = 0;
    for (uint32_t i = 0; i < e->nactive && k < max; i++)
        if (e->books[e->active[i]].want)
            fill_top(e, e->active[i], &out[k++]);
    return k;
}

void xbk_top(struct xbk_engine *e, uint16_t locate, struct xbk_top *out)
{
    fill_top(e, locate, out);
}

void xbk_stats(struct xbk_engine *e, struct xbk_stats *out)
{
    memset(out, 0, sizeof *out);
    out->messages = e->messages;
    out->bbo = e->nbbo;
    out->trades = e->ntrades;
    out->live_orders = e->olive;
    out->levels = e->llive;
    out->gaps = e->gaps;
    for (uint32_t i = 0; i < e->nactive; i++) {
        const struct book *b = &e->books[e->active[i]];
        if (!b->want)
            continue;
        out->books++;
        if (e->suspect || (b->flags & XBK_FLAG_STALE))
            out->stale_books++;
    }
    memcpy(out->errors, e->errors, sizeof out->errors);
    out->suspect_all = e->suspect;
    out->last_event = e->last_event;
}
