/* build.c -- build_plain: capture's event-building hot loop for runs of plain WAL batches.
 *
 * Drop-in for the data-record path of cdc.capture.build.build_events (the pure-Python
 * reference). A batch is handled here only when it is "plain": every op a put, delete,
 * single_delete, merge or delete_range with a non-negative sequence number (len(ops) == count,
 * no markers), a cf id present in cf_json, keys/values/end keys strict UTF-8, numbering not per
 * batch (or a single op), not before the `done` checkpoint, no sequence gap, no rewind.
 * Anything else stops the run *before* that batch (nothing of it is emitted) and Python's loop
 * handles it, then calls back here for the rest.
 *
 * Invariant: every event is a PreEncoded equal to what Python emits for a put, and to
 * encode_event(KeyChange) of what it emits for the other operations (Python builds the
 * KeyChange Struct; the journal stores both the same); per-cf counters, last_seq, last_wal and
 * the numbering flag are exactly what the Python loop produces; the JSON is byte-identical to msgspec's encoder
 * (escapes: \" \\ \b \t \n \f \r, other controls \u00xx lowercase; 0x7f, non-ASCII, U+2028 raw).
 * UTF-8 validation is as strict as bytes.decode(): no overlong forms, no surrogates, nothing
 * above U+10FFFF, no truncated sequence. tests/capture/test_speedups_build.py checks all this.
 */
#include "speedups.h"

static PyTypeObject *PreEncodedType = NULL;
static PyObject *s_key_change, *s_put_name;
static int as_ll(PyObject *o, long long *out);
static uint8_t esc_len[256]; /* bytes of a byte's JSON form (ASCII); 1 for bytes >= 0x80 */

int cdc_build_init(void)
{
    s_key_change = PyUnicode_InternFromString("key_change");
    s_put_name = PyUnicode_InternFromString("put");
    if (!s_key_change || !s_put_name)
        return -1;
    for (int c = 0; c < 256; c++)
        esc_len[c] = 1;
    for (int c = 0; c < 0x20; c++)
        esc_len[c] = 6;
    esc_len['\b'] = esc_len['\t'] = esc_len['\n'] = esc_len['\f'] = esc_len['\r'] = 2;
    esc_len['"'] = esc_len['\\'] = 2;
    return 0;
}

PyObject *cdc_set_event_type(PyObject *self, PyObject *args)
{
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "O:set_event_type", &cls))
        return NULL;
    if (!cdc_is_plain_tuple_class(cls)) {
        PyErr_SetString(PyExc_TypeError, "PreEncoded must be a NamedTuple class");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(PreEncodedType, (PyTypeObject *)cls);
    Py_RETURN_NONE;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define HASZERO(v) (((v) - ONES) & ~(v) & HIGHS)

/* 8 bytes that need no escaping (no control, no quote, no backslash); non-ASCII allowed */
static inline int plain8(uint64_t x)
{
    uint64_t lt20 = (x - 0x2020202020202020ULL) & ~x & HIGHS;
    return !(lt20 | HASZERO(x ^ 0x2222222222222222ULL) | HASZERO(x ^ 0x5C5C5C5C5C5C5C5CULL));
}

/* Strict UTF-8 check + length of the JSON string (with quotes); -1 when not valid UTF-8. */
static Py_ssize_t json_len(const uint8_t *s, size_t n)
{
    size_t i = 0, out = 2;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (!(x & HIGHS) && plain8(x)) {
                i += 8;
                out += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            out += esc_len[c];
            i++;
            continue;
        }
        size_t need;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (i + 1 >= n)
                return -1;
            uint8_t d = s[i + 1];
            if (c == 0xE0 && d < 0xA0)
                return -1; /* overlong */
            if (c == 0xED && d > 0x9F)
                return -1; /* surrogate */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (i + 1 >= n)
                return -1;
            uint8_t d = s[i + 1];
            if (c == 0xF0 && d < 0x90)
                return -1; /* overlong */
            if (c == 0xF4 && d > 0x8F)
                return -1; /* > U+10FFFF */
        } else {
            return -1; /* continuation byte, C0/C1 overlong, F5..FF */
        }
        if (n - i <= need)
            return -1; /* truncated */
        for (size_t k = 1; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return -1;
        i += need + 1;
        out += need + 1;
    }
    return (Py_ssize_t)out;
}

static const char hexd[] = "0123456789abcdef";

/* write the JSON string of s (already validated by json_len) at dst; returns the end */
static char *json_write(char *dst, const uint8_t *s, size_t n)
{
    *dst++ = '"';
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (plain8(x)) {
                memcpy(dst, s + i, 8);
                dst += 8;
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i++];
        if (esc_len[c] == 1) {
            *dst++ = (char)c;
            continue;
        }
        *dst++ = '\\';
        switch (c) {
        case '"': *dst++ = '"'; break;
        case '\\': *dst++ = '\\'; break;
        case '\b': *dst++ = 'b'; break;
        case '\t': *dst++ = 't'; break;
        case '\n': *dst++ = 'n'; break;
        case '\f': *dst++ = 'f'; break;
        case '\r': *dst++ = 'r'; break;
        default:
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = hexd[c >> 4];
            *dst++ = hexd[c & 15];
        }
    }
    *dst++ = '"';
    return dst;
}

/* decimal of a long long (the %d of the Python format) at dst; returns the end */
static char *write_ll(char *dst, long long v)
{
    char tmp[24];
    int k = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *dst++ = '-';
    while (k)
        *dst++ = tmp[--k];
    return dst;
}

/* number of characters write_ll writes for a non-negative v */
static Py_ssize_t ll_digits(long long v)
{
    Py_ssize_t k = 1;
    while (v >= 10) {
        v /= 10;
        k++;
    }
    return k;
}

PyObject *cdc_json_str(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return NULL;
    }
    const uint8_t *s = (const uint8_t *)PyBytes_AS_STRING(arg);
    size_t n = (size_t)PyBytes_GET_SIZE(arg);
    Py_ssize_t len = json_len(s, n);
    if (len < 0)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, len);
    if (out == NULL)
        return NULL;
    json_write(PyBytes_AS_STRING(out), s, n);
    return out;
}

PyObject *cdc_utf8_valid(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return NULL;
    }
    return PyBool_FromLong(json_len((const uint8_t *)PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg)) >= 0);
}

/* counts[cf][slot] += n; counts[cf][slot + 1] += nbytes (build.py's _add_count) */
static int add_count(PyObject *counts, long long cf, int slot, long long n, long long nbytes)
{
    PyObject *key = PyLong_FromLongLong(cf);
    if (key == NULL)
        return -1;
    PyObject *c = PyDict_GetItemWithError(counts, key);
    if (c == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        c = PyList_New(8);
        if (c == NULL) {
            Py_DECREF(key);
            return -1;
        }
        for (int k = 0; k < 8; k++)
            PyList_SET_ITEM(c, k, PyLong_FromLong(0));
        int rc = PyDict_SetItem(counts, key, c);
        Py_DECREF(c); /* the dict holds it */
        if (rc < 0) {
            Py_DECREF(key);
            return -1;
        }
    }
    Py_DECREF(key);
    if (!PyList_Check(c) || PyList_GET_SIZE(c) < slot + 2) {
        PyErr_SetString(PyExc_TypeError, "counts entry is not a list of 8");
        return -1;
    }
    long long add[2] = {n, nbytes};
    for (int k = 0; k < 2; k++) {
        PyObject *d = PyLong_FromLongLong(add[k]);
        if (d == NULL)
            return -1;
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(c, slot + k), d);
        Py_DECREF(d);
        if (sum == NULL)
            return -1;
        PyList_SetItem(c, slot + k, sum); /* steals sum, releases the old value */
    }
    return 0;
}

static int as_ll(PyObject *o, long long *out)
{
    if (!PyLong_Check(o))
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    *out = v;
    return 0;
}

/* op kinds handled here: index into the `heads` tuple and the per-kind rules below */
enum { K_PUT, K_DELETE, K_SINGLE_DELETE, K_MERGE, K_DELETE_RANGE, K_COUNT };
static const char *const kind_names[K_COUNT] = {"put", "delete", "single_delete", "merge", "delete_range"};
static const int kind_slot[K_COUNT] = {0, 2, 2, 4, 6}; /* build.py's _STAT_SLOT */

typedef struct {
    Py_ssize_t jk, jv, je;           /* JSON lengths of key, value (put/merge), end key (delete_range) */
    PyObject *key, *value, *end_key; /* borrowed; value/end_key NULL when the kind has none */
    PyObject *cfname, *cfjson;       /* borrowed */
    long long seq, cf;
    int kind;
} OpInfo;

#define SMALL_BATCH 128

static int op_kind(PyObject *name)
{
    for (int k = 0; k < K_COUNT; k++)
        if (PyUnicode_CompareWithASCIIString(name, kind_names[k]) == 0)
            return k;
    return -1;
}

static inline Py_ssize_t json_len_of(PyObject *b)
{
    return json_len((const uint8_t *)PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
}

/* Pass 1 for one op: 0 when C can encode it (and *pi is filled), 1 to hand the batch back. */
static int check_op(PyObject *op, PyObject *cf_json, OpInfo *pi)
{
    if (!PyTuple_Check(op) || PyTuple_GET_SIZE(op) < 6 || as_ll(PyTuple_GET_ITEM(op, 0), &pi->seq) || pi->seq < 0)
        return 1;
    PyObject *name = PyTuple_GET_ITEM(op, 1);
    if (name == s_put_name)
        pi->kind = K_PUT;
    else if (!PyUnicode_Check(name) || (pi->kind = op_kind(name)) < 0)
        return 1;
    PyObject *cfid = PyTuple_GET_ITEM(op, 2);
    if (as_ll(cfid, &pi->cf))
        return 1;
    PyObject *cfj = PyDict_GetItemWithError(cf_json, cfid);
    if (cfj == NULL)
        return PyErr_Occurred() ? -1 : 1; /* unknown cf: Python reports it */
    if (!PyTuple_Check(cfj) || PyTuple_GET_SIZE(cfj) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(cfj, 0))
        || !PyBytes_Check(PyTuple_GET_ITEM(cfj, 1)))
        return 1;
    pi->cfname = PyTuple_GET_ITEM(cfj, 0);
    pi->cfjson = PyTuple_GET_ITEM(cfj, 1);
    pi->key = PyTuple_GET_ITEM(op, 3);
    PyObject *v = PyTuple_GET_ITEM(op, 4), *ek = PyTuple_GET_ITEM(op, 5);
    if (!PyBytes_CheckExact(pi->key) || (pi->jk = json_len_of(pi->key)) < 0)
        return 1; /* not UTF-8: Python writes base64 */
    pi->value = pi->end_key = NULL;
    pi->jv = pi->je = 0;
    if (pi->kind == K_PUT || pi->kind == K_MERGE) {
        if (!PyBytes_CheckExact(v) || ek != Py_None || (pi->jv = json_len_of(v)) < 0)
            return 1;
        pi->value = v;
    } else if (pi->kind == K_DELETE_RANGE) {
        if (v != Py_None || !PyBytes_CheckExact(ek) || (pi->je = json_len_of(ek)) < 0)
            return 1;
        pi->end_key = ek;
    } else if (v != Py_None || ek != Py_None) {
        return 1;
    }
    return 0;
}

/* build_plain(batches, i, events, counts, cf_json, heads, last_seq, last_wal, done_wal,
 *             done_off, per_batch, put_cf, put_n, put_b)
 *   -> (i, last_seq, last_wal, put_cf, put_n, put_b, per_key)
 * heads: for put, delete, single_delete, merge, delete_range, the event's JSON up to the key
 * (wire.PUT_HEAD % ts with that operation). Emits the events of the plain batches from index i
 * on into `events`; stops at the first batch that is not plain (its index is returned; nothing
 * of it was emitted). Puts are counted in (put_cf, put_n, put_b) per run of one cf and the
 * others straight into `counts`, as build.py does. */
PyObject *cdc_build_plain(PyObject *self, PyObject *args)
{
    PyObject *batches, *events, *counts, *cf_json, *heads;
    Py_ssize_t i;
    PyObject *o_last_seq, *o_last_wal, *o_done_wal, *o_done_off, *o_put_cf, *o_put_n, *o_put_b;
    int per_batch;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!O!OOOOpOOO:build_plain", &PyList_Type, &batches, &i, &PyList_Type, &events,
                          &PyDict_Type, &counts, &PyDict_Type, &cf_json, &PyTuple_Type, &heads, &o_last_seq,
                          &o_last_wal, &o_done_wal, &o_done_off, &per_batch, &o_put_cf, &o_put_n, &o_put_b))
        return NULL;
    if (PreEncodedType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_event_type() was not called");
        return NULL;
    }
    if (PyTuple_GET_SIZE(heads) != K_COUNT) {
        PyErr_SetString(PyExc_ValueError, "heads: one per operation (put, delete, single_delete, merge, delete_range)");
        return NULL;
    }
    const char *head[K_COUNT];
    Py_ssize_t head_len[K_COUNT];
    for (int k = 0; k < K_COUNT; k++) {
        PyObject *h = PyTuple_GET_ITEM(heads, k);
        if (!PyBytes_Check(h)) {
            PyErr_SetString(PyExc_TypeError, "heads must be bytes");
            return NULL;
        }
        head[k] = PyBytes_AS_STRING(h);
        head_len[k] = PyBytes_GET_SIZE(h);
    }
    long long last_seq, last_wal, done_wal, done_off, put_cf, put_n, put_b;
    if (i < 0 || as_ll(o_last_seq, &last_seq) || as_ll(o_last_wal, &last_wal) || as_ll(o_done_wal, &done_wal)
        || as_ll(o_done_off, &done_off) || as_ll(o_put_cf, &put_cf) || as_ll(o_put_n, &put_n) || as_ll(o_put_b, &put_b))
        /* values C cannot hold: leave everything to Python */
        return Py_BuildValue("(nOOOOOi)", i, o_last_seq, o_last_wal, o_put_cf, o_put_n, o_put_b, 0);
    int per_key = 0;
    OpInfo small[SMALL_BATCH];
    OpInfo *info = small;
    Py_ssize_t info_cap = SMALL_BATCH;
    Py_ssize_t nb = PyList_GET_SIZE(batches);
    for (; i < nb; i++) {
        PyObject *b = PyList_GET_ITEM(batches, i);
        if (!PyTuple_Check(b) || PyTuple_CheckExact(b) || PyTuple_GET_SIZE(b) != 5)
            break; /* a Batch (Python reads its attributes: a bare tuple is its error to raise) */
        long long log_number, offset, bseq, count;
        PyObject *ops = PyTuple_GET_ITEM(b, 4);
        if (as_ll(PyTuple_GET_ITEM(b, 0), &log_number) || as_ll(PyTuple_GET_ITEM(b, 1), &offset)
            || as_ll(PyTuple_GET_ITEM(b, 2), &bseq) || as_ll(PyTuple_GET_ITEM(b, 3), &count) || !PyList_Check(ops))
            break;
        if (log_number == done_wal && offset < done_off)
            break; /* before the checkpoint: Python skips it */
        if (count && 0 <= bseq && bseq <= last_seq && log_number != last_wal)
            break; /* rewind */
        Py_ssize_t nops = PyList_GET_SIZE(ops);
        if (nops != count)
            break; /* markers present */
        int sets_per_key = 0;
        if (nops != 1) {
            if (per_batch)
                break;
            sets_per_key = 1;
        }
        long long consumed = count;
        if (bseq > INT64_MAX - consumed || last_seq == INT64_MAX)
            break;
        if (last_seq >= 0 && bseq > last_seq + 1 && (consumed || count))
            break; /* sequence gap: Python emits the capture_gap */
        /* pass 1: check every op and measure it (nothing emitted yet) */
        if (nops > info_cap) {
            OpInfo *ni = PyMem_Malloc(sizeof(OpInfo) * (size_t)nops);
            if (ni == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            if (info != small)
                PyMem_Free(info);
            info = ni;
            info_cap = nops;
        }
        int bad = 0;
        for (Py_ssize_t k = 0; k < nops && !bad; k++)
            bad = check_op(PyList_GET_ITEM(ops, k), cf_json, &info[k]);
        if (bad < 0)
            goto error;
        if (bad)
            break;
        /* pass 2: emit (the batch is plain) */
        char marks[64]; /* ,"batch_seq":N,"batch_count":M (KeyChange's fields after seq) */
        Py_ssize_t marks_len = 0;
        if (nops > 1) {
            char *t = marks;
            memcpy(t, ",\"batch_seq\":", 13);
            t = write_ll(t + 13, bseq);
            memcpy(t, ",\"batch_count\":", 15);
            t = write_ll(t + 15, (long long)nops);
            marks_len = t - marks;
        }
        if (sets_per_key)
            per_key = 1;
        long long before = last_seq;
        if (consumed)
            last_seq = bseq + consumed - 1;
        for (Py_ssize_t k = 0; k < nops; k++) {
            OpInfo *pi = &info[k];
            int kind = pi->kind;
            Py_ssize_t kl = PyBytes_GET_SIZE(pi->key);
            if (kind == K_PUT) {
                if (pi->cf != put_cf) { /* puts are counted per run of one cf */
                    if (put_n && add_count(counts, put_cf, 0, put_n, put_b) < 0)
                        goto error;
                    put_cf = pi->cf;
                    put_n = 0;
                    put_b = 0;
                }
                put_n += 1;
                put_b += kl + PyBytes_GET_SIZE(pi->value);
            } else {
                Py_ssize_t other = pi->end_key ? PyBytes_GET_SIZE(pi->end_key) : pi->value ? PyBytes_GET_SIZE(pi->value) : 0;
                if (add_count(counts, pi->cf, kind_slot[kind], 1, kl + other) < 0)
                    goto error;
            }
            Py_ssize_t cfl = PyBytes_GET_SIZE(pi->cfjson);
            Py_ssize_t core_len = head_len[kind] + pi->jk + 6 + cfl + 7 + ll_digits(pi->seq) + marks_len + 1;
            if (pi->end_key)
                core_len += 11 + pi->je;
            PyObject *it[6];
            it[0] = PyBytes_FromStringAndSize(NULL, core_len);
            it[1] = PyBytes_FromStringAndSize(NULL, pi->value ? 9 + pi->jv : 0);
            if (it[0] == NULL || it[1] == NULL) {
                Py_XDECREF(it[0]);
                Py_XDECREF(it[1]);
                goto error;
            }
            char *d = PyBytes_AS_STRING(it[0]);
            memcpy(d, head[kind], (size_t)head_len[kind]);
            d = json_write(d + head_len[kind], (const uint8_t *)PyBytes_AS_STRING(pi->key), (size_t)kl);
            memcpy(d, ",\"cf\":", 6);
            memcpy(d + 6, PyBytes_AS_STRING(pi->cfjson), (size_t)cfl);
            d += 6 + cfl;
            memcpy(d, ",\"seq\":", 7);
            d = write_ll(d + 7, pi->seq);
            memcpy(d, marks, (size_t)marks_len);
            d += marks_len;
            if (pi->end_key) {
                memcpy(d, ",\"end_key\":", 11);
                d = json_write(d + 11, (const uint8_t *)PyBytes_AS_STRING(pi->end_key), (size_t)PyBytes_GET_SIZE(pi->end_key));
            }
            *d = '}';
            if (pi->value) {
                d = PyBytes_AS_STRING(it[1]);
                memcpy(d, ",\"value\":", 9);
                json_write(d + 9, (const uint8_t *)PyBytes_AS_STRING(pi->value), (size_t)PyBytes_GET_SIZE(pi->value));
            }
            Py_INCREF(s_key_change);
            it[2] = s_key_change;
            Py_INCREF(pi->cfname);
            it[3] = pi->cfname;
            Py_INCREF(pi->key);
            it[4] = pi->key;
            it[5] = pi->end_key ? pi->end_key : Py_None;
            Py_INCREF(it[5]);
            PyObject *ev = cdc_new_tuple(PreEncodedType, it, 6);
            if (ev == NULL)
                goto error;
            int rc = PyList_Append(events, ev);
            Py_DECREF(ev);
            if (rc < 0)
                goto error;
        }
        if (last_seq != before)
            last_wal = log_number;
    }
    if (info != small)
        PyMem_Free(info);
    return Py_BuildValue("(nLLLLLi)", i, last_seq, last_wal, put_cf, put_n, put_b, per_key);
error:
    if (info != small)
        PyMem_Free(info);
    return NULL;
}
