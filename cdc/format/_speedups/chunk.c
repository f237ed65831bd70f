/*
 * chunk.c -- the journal's per-event chunk packing loop (cdc.journal's Journal._commit).
 *
 * encode_run(items, start, first_id, ts, max_events, max_bytes) packs pre-encoded events
 * items[start:] -- tuples (core: bytes, value: bytes, type: str, cf: str|None, key: bytes|None,
 * end_key: bytes|None) -- into the pieces of one chunk (cdc/model/chunk.py): the comma-separated
 * wire region ('{"id":N,' + core[1:] per event), the ix region, the two u32 end-offset tables,
 * (the caller adds the region's brackets), the summary inputs (set of types, set of cfs, smallest and largest key, flags) and the number
 * of events taken (at most max_events; stops after the event that reaches max_bytes).
 *
 * Invariant: byte-identical to cdc.model.chunk.encode_chunk (tests/journal/test_chunk_pack.py).
 * Anything unusual (a type other than exactly bytes/str/None where expected, a core not starting
 * with '{', lengths over the layout's limits) returns None: the caller then runs the Python
 * reference on the same items, which raises or handles it exactly as without this module.
 */
#include "speedups.h"
#include <string.h>

#define F_RANGES 1
#define F_KEYLESS 2
#define F_NO_CF 4
#define NO_CF 0xFFFF
#define LONG_CF 0xFFFE
#define MAX_TYPE 0xFFFF
#define IX_HEAD 20

static inline void put_u16(char *p, uint16_t v) { p[0] = (char)(v & 0xff); p[1] = (char)(v >> 8); }
static inline void put_u32(char *p, uint32_t v) {
    p[0] = (char)(v & 0xff); p[1] = (char)((v >> 8) & 0xff); p[2] = (char)((v >> 16) & 0xff); p[3] = (char)(v >> 24);
}
static inline void put_u64(char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) { p[i] = (char)(v & 0xff); v >>= 8; }
}

static int digits_u64(uint64_t v) {
    int n = 1;
    while (v >= 10) { v /= 10; n++; }
    return n;
}

static char *write_u64(char *p, uint64_t v, int nd) {
    char *end = p + nd;
    char *q = end;
    do { *--q = (char)('0' + v % 10); v /= 10; } while (v);
    return end;
}

/* bytes comparison as Python does it (lexicographic, unsigned, shorter prefix first) */
static int cmp_bytes(const char *a, Py_ssize_t la, const char *b, Py_ssize_t lb) {
    Py_ssize_t n = la < lb ? la : lb;
    int c = memcmp(a, b, (size_t)n);
    if (c) return c;
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

typedef struct {
    PyObject *core, *value, *etype, *cf, *key, *end_key;
    const char *t, *c;
    Py_ssize_t tl, cl;
} item_t;

static int unpack_item(PyObject *it, item_t *o) {
    if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 6) return 0;
    o->core = PyTuple_GET_ITEM(it, 0);
    o->value = PyTuple_GET_ITEM(it, 1);
    o->etype = PyTuple_GET_ITEM(it, 2);
    o->cf = PyTuple_GET_ITEM(it, 3);
    o->key = PyTuple_GET_ITEM(it, 4);
    o->end_key = PyTuple_GET_ITEM(it, 5);
    if (!PyBytes_CheckExact(o->core) || !PyBytes_CheckExact(o->value) || !PyUnicode_CheckExact(o->etype)) return 0;
    if (PyBytes_GET_SIZE(o->core) < 1 || PyBytes_AS_STRING(o->core)[0] != '{') return 0;
    if (o->cf != Py_None && !PyUnicode_CheckExact(o->cf)) return 0;
    if (o->key != Py_None && !PyBytes_CheckExact(o->key)) return 0;
    if (o->end_key != Py_None && !PyBytes_CheckExact(o->end_key)) return 0;
    o->t = PyUnicode_AsUTF8AndSize(o->etype, &o->tl);
    if (o->t == NULL) { PyErr_Clear(); return 0; }
    if (o->tl > MAX_TYPE) return 0;
    o->c = NULL;
    o->cl = 0;
    if (o->cf != Py_None) {
        o->c = PyUnicode_AsUTF8AndSize(o->cf, &o->cl);
        if (o->c == NULL) { PyErr_Clear(); return 0; }
    }
    if (o->key != Py_None && PyBytes_GET_SIZE(o->key) > INT32_MAX) return 0;
    if (o->end_key != Py_None && PyBytes_GET_SIZE(o->end_key) > INT32_MAX) return 0;
    return 1;
}

PyObject *cdc_encode_run(PyObject *self, PyObject *args) {
    PyObject *items;
    Py_ssize_t start, max_events, max_bytes;
    unsigned long long first_id;
    long long ts;
    if (!PyArg_ParseTuple(args, "O!nKLnn", &PyList_Type, &items, &start, &first_id, &ts, &max_events, &max_bytes))
        return NULL;
    Py_ssize_t len = PyList_GET_SIZE(items);
    if (start < 0 || start > len || max_events < 1) Py_RETURN_NONE;
    Py_ssize_t end = start + max_events < len ? start + max_events : len;
    /* pass 1: sizes and where to stop */
    Py_ssize_t ev_total = 0, ix_total = 0, size = 0, i;
    item_t it;
    uint64_t id = first_id;
    for (i = start; i < end;) {
        if (!unpack_item(PyList_GET_ITEM(items, i), &it)) Py_RETURN_NONE;
        Py_ssize_t wl = 6 + digits_u64(id) + PyBytes_GET_SIZE(it.core); /* '{"id":' N ',' core[1:] */
        Py_ssize_t tc = it.tl + (it.cf == Py_None ? 0 : it.cl + (it.cl >= LONG_CF ? 4 : 0));
        Py_ssize_t xl = IX_HEAD + tc + (it.key == Py_None ? 0 : PyBytes_GET_SIZE(it.key)) +
                        (it.end_key == Py_None ? 0 : PyBytes_GET_SIZE(it.end_key)) + PyBytes_GET_SIZE(it.value);
        if (ev_total + wl + 1 > UINT32_MAX || ix_total + xl > UINT32_MAX) {
            if (i == start) Py_RETURN_NONE;
            break;
        }
        ev_total += wl + 1;
        ix_total += xl;
        size += wl + xl;
        i++;
        id++;
        if (size >= max_bytes) break;
    }
    Py_ssize_t n = i - start;
    if (n == 0) Py_RETURN_NONE;
    ev_total -= 1; /* no comma after the last */
    PyObject *ev = PyBytes_FromStringAndSize(NULL, ev_total);
    PyObject *ix = PyBytes_FromStringAndSize(NULL, ix_total);
    PyObject *ev_ends = PyBytes_FromStringAndSize(NULL, 4 * n);
    PyObject *ix_ends = PyBytes_FromStringAndSize(NULL, 4 * n);
    PyObject *types = PySet_New(NULL);
    PyObject *cfs = PySet_New(NULL);
    if (!ev || !ix || !ev_ends || !ix_ends || !types || !cfs) goto fail;
    char *pe = PyBytes_AS_STRING(ev), *px = PyBytes_AS_STRING(ix);
    char *pee = PyBytes_AS_STRING(ev_ends), *pxe = PyBytes_AS_STRING(ix_ends);
    char *e0 = pe, *x0 = px;
    PyObject *last_t = NULL, *last_cf = NULL, *kmin = NULL, *kmax = NULL;
    int flags = 0;
    id = first_id;
    for (i = start; i < start + n; i++, id++) {
        unpack_item(PyList_GET_ITEM(items, i), &it); /* checked in pass 1 */
        if (i > start) *pe++ = ',';
        memcpy(pe, "{\"id\":", 6);
        pe = write_u64(pe + 6, id, digits_u64(id));
        *pe++ = ',';
        Py_ssize_t cl = PyBytes_GET_SIZE(it.core) - 1;
        memcpy(pe, PyBytes_AS_STRING(it.core) + 1, (size_t)cl);
        pe += cl;
        put_u32(pee + 4 * (i - start), (uint32_t)(pe - e0));
        /* ix: header, type, [u32 long cf length], cf, key, end_key, value */
        Py_ssize_t kl = it.key == Py_None ? -1 : PyBytes_GET_SIZE(it.key);
        Py_ssize_t el = it.end_key == Py_None ? -1 : PyBytes_GET_SIZE(it.end_key);
        put_u64(px, (uint64_t)ts);
        put_u16(px + 8, (uint16_t)it.tl);
        put_u16(px + 10, (uint16_t)(it.cf == Py_None ? NO_CF : (it.cl >= LONG_CF ? LONG_CF : it.cl)));
        put_u32(px + 12, (uint32_t)(int32_t)kl);
        put_u32(px + 16, (uint32_t)(int32_t)el);
        px += IX_HEAD;
        memcpy(px, it.t, (size_t)it.tl);
        px += it.tl;
        if (it.cf != Py_None) {
            if (it.cl >= LONG_CF) { put_u32(px, (uint32_t)it.cl); px += 4; }
            memcpy(px, it.c, (size_t)it.cl);
            px += it.cl;
        }
        if (kl > 0) { memcpy(px, PyBytes_AS_STRING(it.key), (size_t)kl); px += kl; }
        if (el > 0) { memcpy(px, PyBytes_AS_STRING(it.end_key), (size_t)el); px += el; }
        Py_ssize_t vl = PyBytes_GET_SIZE(it.value);
        memcpy(px, PyBytes_AS_STRING(it.value), (size_t)vl);
        px += vl;
        put_u32(pxe + 4 * (i - start), (uint32_t)(px - x0));
        /* summary */
        if (it.etype != last_t) {
            if (PySet_Add(types, it.etype) < 0) goto fail;
            last_t = it.etype;
        }
        if (it.cf == Py_None) flags |= F_NO_CF;
        else if (it.cf != last_cf) {
            if (PySet_Add(cfs, it.cf) < 0) goto fail;
            last_cf = it.cf;
        }
        if (it.key == Py_None) flags |= F_KEYLESS;
        else {
            const char *k = PyBytes_AS_STRING(it.key);
            if (kmin == NULL || cmp_bytes(k, kl, PyBytes_AS_STRING(kmin), PyBytes_GET_SIZE(kmin)) < 0) kmin = it.key;
            if (kmax == NULL || cmp_bytes(k, kl, PyBytes_AS_STRING(kmax), PyBytes_GET_SIZE(kmax)) > 0) kmax = it.key;
        }
        if (it.end_key != Py_None) flags |= F_RANGES;
    }
    return Py_BuildValue("(NNNNnNNOOi)", ev, ix, ev_ends, ix_ends, n, types, cfs,
                         kmin ? kmin : Py_None, kmax ? kmax : Py_None, flags);
fail:
    Py_XDECREF(ev); Py_XDECREF(ix); Py_XDECREF(ev_ends); Py_XDECREF(ix_ends);
    Py_XDECREF(types); Py_XDECREF(cfs);
    return NULL;
}
