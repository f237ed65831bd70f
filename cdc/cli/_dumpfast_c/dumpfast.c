/* cdc.cli._dumpfast: the keys-only renderer of `cdc dump-wal`, in C (optional extension).
 *
 * The pure-Python keys-only fast path (cdc/cli/dumpwal.py, _KeysOnly) stays the reference and the
 * fallback: this module renders exactly the same lines for the records it accepts, and stops
 * (returns what it rendered so far) at the first record it does not accept, which the Python
 * reader then handles -- and reports -- as without it.
 *
 * Accepted: legacy (non-recyclable) log records -- FULL, or FIRST + MIDDLE* + LAST with block
 * trailers in between -- each fragment inside its block and with a valid masked CRC32C, whose
 * payload is a WriteBatch of 1..N Puts to the default column family (tag 0x01), each with
 * varint32 key/value lengths, exactly filling the payload, every key printable ASCII other than
 * '"' and '\\' (what msgspec prints verbatim between quotes). Multi-record batches only when the
 * caller says they are numbered per key (multi != 0). Each record gives one line:
 *
 *   {"seq":S,"op":"put","cf":<cf>,"key":"K","wal":W,"offset":O}\n
 *
 * or, with `values`, ...,"offset":O,"value":"V"}\n (the value printable ASCII like the key),
 * with `mid` = ,"op":"put","cf":<cf>,"key":"  and `tail` = ","wal":W,"offset":  given by the
 * caller (so the column family name and the WAL number are rendered by Python).
 *
 * Facts used (RocksDB db/log_format.h, db/write_batch.cc): 32 KiB blocks, 7-byte legacy header
 * (masked crc32c fixed32, length fixed16, type), CRC over type byte + payload, mask =
 * rot15(crc) + 0xa282ead8; WriteBatch = seq fixed64, count fixed32, records.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ CRC32C (Castagnoli)
 * The one implementation of cdc's C code, cdc/format/_speedups/crc32c.c (compiled into this
 * extension too: see setup.py): SSE4.2 when the CPU has it, else slice-by-8 tables. */

void cdc_crc32c_init(void);
int cdc_crc32c_hw(void);
uint32_t cdc_crc32c(uint32_t crc, const uint8_t *p, size_t n);
uint32_t cdc_crc32c_table(uint32_t crc, const uint8_t *p, size_t n);

static inline uint32_t crc32c(const unsigned char *p, size_t n) { return cdc_crc32c(0, p, n); }
static inline uint32_t crc_sw(const unsigned char *p, size_t n) { return cdc_crc32c_table(0, p, n); }

static inline int crc_ok(const unsigned char *rec, size_t length) {
    /* rec: a 7-byte legacy header followed by `length` payload bytes */
    uint32_t c = crc32c(rec + 6, length + 1);
    uint32_t masked = ((c >> 15) | (c << 17)) + 0xA282EAD8u;
    uint32_t stored = (uint32_t)rec[0] | ((uint32_t)rec[1] << 8) | ((uint32_t)rec[2] << 16) | ((uint32_t)rec[3] << 24);
    return masked == stored;
}

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} obuf;

static int ob_reserve(obuf *o, Py_ssize_t extra) {
    if (o->p && o->len + extra <= o->cap) return 0; /* (always a buffer: no memcpy to NULL) */
    Py_ssize_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + extra) cap *= 2;
    char *np = PyMem_Realloc(o->p, (size_t)cap);
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    o->p = np;
    o->cap = cap;
    return 0;
}

static inline char *put_u64(char *d, uint64_t v) {
    char tmp[20];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k) *d++ = tmp[--k];
    return d;
}

/* printable ASCII other than '"' and '\\' */
static unsigned char safe[256];

static void safe_init(void) {
    for (int c = 0; c < 256; c++) safe[c] = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* ------------------------------------------------------------------ WriteBatch -> lines */

typedef struct {
    const char *mid;
    Py_ssize_t mid_len;
    const char *tail;
    Py_ssize_t tail_len;
    int values; /* also print the value: ,"value":"V" after the offset (printable ASCII too) */
} line_parts;

static inline int varint32(const unsigned char *p, Py_ssize_t n, Py_ssize_t *pos, uint32_t *out) {
    /* canonical varints of up to 3 bytes (lengths < 2 MiB); anything else: not accepted */
    Py_ssize_t i = *pos;
    if (i >= n) return 0;
    uint32_t b = p[i];
    if (b < 0x80) {
        *out = b;
        *pos = i + 1;
        return 1;
    }
    if (i + 1 >= n) return 0;
    uint32_t b1 = p[i + 1];
    if (b1 < 0x80) {
        if (b1 == 0) return 0;
        *out = (b & 0x7F) | (b1 << 7);
        *pos = i + 2;
        return 1;
    }
    if (i + 2 >= n) return 0;
    uint32_t b2 = p[i + 2];
    if (b2 >= 0x80 || b2 == 0) return 0;
    *out = (b & 0x7F) | ((b1 & 0x7F) << 7) | (b2 << 14);
    *pos = i + 3;
    return 1;
}

/* Render the batch's lines at the end of `o`; -1 on memory error, 0 not accepted (o unchanged),
 * else the number of lines. */
static Py_ssize_t render_batch(obuf *o, const unsigned char *pl, Py_ssize_t n, uint64_t offset, int multi,
                               const line_parts *lp) {
    if (n < 12 + 3) return 0;
    uint64_t seq;
    uint32_t count;
    memcpy(&seq, pl, 8);
    memcpy(&count, pl + 8, 4);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    seq = 0;
    for (int k = 7; k >= 0; k--) seq = (seq << 8) | pl[k];
    count = (uint32_t)pl[8] | ((uint32_t)pl[9] << 8) | ((uint32_t)pl[10] << 16) | ((uint32_t)pl[11] << 24);
#endif
    if (count == 0 || (count > 1 && !multi)) return 0;
    if (seq + (uint64_t)count - 1 < seq) return 0; /* would overflow 64 bits */
    Py_ssize_t saved = o->len;
    char obuf_off[24];
    char *oe = put_u64(obuf_off, offset);
    Py_ssize_t off_len = oe - obuf_off;
    Py_ssize_t pos = 12;
    for (uint32_t r = 0; r < count; r++) {
        uint32_t klen, vlen;
        if (pos >= n || pl[pos] != 0x01) goto reject;
        pos++;
        if (!varint32(pl, n, &pos, &klen) || (uint64_t)pos + klen > (uint64_t)n) goto reject;
        const unsigned char *key = pl + pos;
        pos += klen;
        if (!varint32(pl, n, &pos, &vlen) || (uint64_t)pos + vlen > (uint64_t)n) goto reject;
        const unsigned char *value = pl + pos;
        pos += vlen;
        for (uint32_t k = 0; k < klen; k++)
            if (!safe[key[k]]) goto reject;
        Py_ssize_t extra = 0;
        if (lp->values) {
            for (uint32_t k = 0; k < vlen; k++)
                if (!safe[value[k]]) goto reject;
            extra = 11 + vlen;
        }
        if (ob_reserve(o, 7 + 20 + lp->mid_len + klen + lp->tail_len + off_len + 2 + extra) < 0) return -1;
        char *d = o->p + o->len;
        memcpy(d, "{\"seq\":", 7);
        d = put_u64(d + 7, seq + r);
        memcpy(d, lp->mid, (size_t)lp->mid_len);
        d += lp->mid_len;
        memcpy(d, key, klen);
        d += klen;
        memcpy(d, lp->tail, (size_t)lp->tail_len);
        d += lp->tail_len;
        memcpy(d, obuf_off, (size_t)off_len);
        d += off_len;
        if (lp->values) {
            memcpy(d, ",\"value\":\"", 10);
            d += 10;
            memcpy(d, value, vlen);
            d += vlen;
            *d++ = '"';
        }
        d[0] = '}';
        d[1] = '\n';
        o->len = (d + 2) - o->p;
    }
    if (pos != n) goto reject;
    return (Py_ssize_t)count;
reject:
    o->len = saved;
    return 0;
}

/* ------------------------------------------------------------------ framing */

#define BLOCK 32768

/* Scan the records of buf[i:n] (buf[0] at file offset `base`). Returns the number of lines
 * rendered (or -1 on memory error); *end = index after the last accepted record. */
static Py_ssize_t scan_records(obuf *o, obuf *scratch, const unsigned char *buf, Py_ssize_t n, uint64_t base,
                               Py_ssize_t i, int multi, const line_parts *lp, Py_ssize_t *end) {
    Py_ssize_t lines = 0;
    *end = i;
    for (;;) {
        Py_ssize_t left = BLOCK - (Py_ssize_t)((base + (uint64_t)i) % BLOCK);
        if (left < 7) { /* trailer: skipped only when bytes beyond the block are there */
            if (n - i > left) {
                i += left;
                continue;
            }
            break;
        }
        if (n - i < 7) break;
        Py_ssize_t length = buf[i + 4] | (buf[i + 5] << 8);
        int type = buf[i + 6];
        if (7 + length > left || i + 7 + length > n) break;
        const unsigned char *payload;
        Py_ssize_t plen, next;
        if (type == 1) {
            if (!crc_ok(buf + i, (size_t)length)) break;
            payload = buf + i + 7;
            plen = length;
            next = i + 7 + length;
        } else if (type == 2) {
            if (!crc_ok(buf + i, (size_t)length)) break;
            scratch->len = 0;
            if (ob_reserve(scratch, length) < 0) return -1;
            memcpy(scratch->p, buf + i + 7, (size_t)length);
            scratch->len = length;
            Py_ssize_t j = i + 7 + length;
            int done = 0;
            for (;;) {
                Py_ssize_t lj = BLOCK - (Py_ssize_t)((base + (uint64_t)j) % BLOCK);
                if (lj < 7) {
                    if (n - j > lj) {
                        j += lj;
                        continue;
                    }
                    break;
                }
                if (n - j < 7) break;
                Py_ssize_t fl = buf[j + 4] | (buf[j + 5] << 8);
                int ft = buf[j + 6];
                if ((ft != 3 && ft != 4) || 7 + fl > lj || j + 7 + fl > n) break;
                if (!crc_ok(buf + j, (size_t)fl)) break;
                if (ob_reserve(scratch, fl) < 0) return -1;
                memcpy(scratch->p + scratch->len, buf + j + 7, (size_t)fl);
                scratch->len += fl;
                j += 7 + fl;
                if (ft == 4) {
                    done = 1;
                    break;
                }
            }
            if (!done) break;
            payload = (const unsigned char *)scratch->p;
            plen = scratch->len;
            next = j;
        } else {
            break;
        }
        Py_ssize_t got = render_batch(o, payload, plen, base + (uint64_t)i, multi, lp);
        if (got < 0) return -1;
        if (got == 0) break;
        lines += got;
        i = next;
        *end = i;
    }
    return lines;
}

/* ------------------------------------------------------------------ Python API */

static int get_parts(PyObject *mid, PyObject *tail, PyObject *values, line_parts *lp) {
    if (!PyBytes_Check(mid) || !PyBytes_Check(tail)) {
        PyErr_SetString(PyExc_TypeError, "mid and tail must be bytes");
        return -1;
    }
    lp->mid = PyBytes_AS_STRING(mid);
    lp->mid_len = PyBytes_GET_SIZE(mid);
    lp->tail = PyBytes_AS_STRING(tail);
    lp->tail_len = PyBytes_GET_SIZE(tail);
    lp->values = values ? PyObject_IsTrue(values) : 0;
    return lp->values < 0 ? -1 : 0;
}

static PyObject *finish(obuf *o, PyObject *rest) {
    PyObject *data = PyBytes_FromStringAndSize(o->p ? o->p : "", o->len);
    PyMem_Free(o->p);
    if (!data) {
        Py_XDECREF(rest);
        return NULL;
    }
    if (!rest) return data;
    PyObject *t = PyTuple_Pack(2, data, rest);
    Py_DECREF(data);
    Py_DECREF(rest);
    return t;
}

PyDoc_STRVAR(scan_doc,
             "scan(buf, base, start, mid, tail, multi, values=False) -> (lines: bytes, end: int, count: int)\n\n"
             "Render the leading run of accepted records of buf[start:] (buf[0] is at file offset base);\n"
             "end = index in buf after the last rendered record (start when none), count = lines.");

static PyObject *py_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 6 or 7 arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    unsigned long long base = PyLong_AsUnsignedLongLong(args[1]);
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    int multi = PyObject_IsTrue(args[5]);
    line_parts lp;
    if (PyErr_Occurred() || multi < 0 || get_parts(args[3], args[4], nargs > 6 ? args[6] : NULL, &lp) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (start < 0 || start > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    obuf o = {0}, scratch = {0};
    Py_ssize_t end = start;
    Py_ssize_t lines = scan_records(&o, &scratch, (const unsigned char *)view.buf, view.len, base, start, multi, &lp, &end);
    PyBuffer_Release(&view);
    PyMem_Free(scratch.p);
    if (lines < 0) {
        PyMem_Free(o.p);
        return NULL;
    }
    PyObject *rest = Py_BuildValue("(nn)", end, lines);
    if (!rest) {
        PyMem_Free(o.p);
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize(o.p ? o.p : "", o.len);
    PyMem_Free(o.p);
    if (!data) {
        Py_DECREF(rest);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(3, data, PyTuple_GET_ITEM(rest, 0), PyTuple_GET_ITEM(rest, 1));
    Py_DECREF(data);
    Py_DECREF(rest);
    return t;
}

PyDoc_STRVAR(batch_doc,
             "batch(payload, offset, mid, tail, values=False) -> bytes | None\n\n"
             "The lines of one WriteBatch payload (records numbered per key) at file offset `offset`,\n"
             "or None when it is not a batch this module accepts.");

static PyObject *py_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "batch() takes 4 or 5 arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    unsigned long long offset = PyLong_AsUnsignedLongLong(args[1]);
    line_parts lp;
    if (PyErr_Occurred() || get_parts(args[2], args[3], nargs > 4 ? args[4] : NULL, &lp) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    obuf o = {0};
    Py_ssize_t got = render_batch(&o, (const unsigned char *)view.buf, view.len, offset, 1, &lp);
    PyBuffer_Release(&view);
    if (got < 0) {
        PyMem_Free(o.p);
        return NULL;
    }
    if (got == 0) {
        PyMem_Free(o.p);
        Py_RETURN_NONE;
    }
    return finish(&o, NULL);
}

PyDoc_STRVAR(crc_doc, "crc32c(data) -> int: the CRC32C of data (for tests).");
PyDoc_STRVAR(crc_table_doc, "crc32c_table(data) -> int: the same with the table code (for tests).");

static PyObject *py_crc32c_table(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t c = crc_sw((const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyObject *py_crc32c(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t c = crc32c((const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))py_scan, METH_FASTCALL, scan_doc},
    {"batch", (PyCFunction)(void (*)(void))py_batch, METH_FASTCALL, batch_doc},
    {"crc32c", py_crc32c, METH_O, crc_doc},
    {"crc32c_table", py_crc32c_table, METH_O, crc_table_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cdc.cli._dumpfast", "Keys-only renderer of cdc dump-wal (optional C speed-up).", -1, methods,
};

PyMODINIT_FUNC PyInit__dumpfast(void) {
    cdc_crc32c_init();
    safe_init();
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "hardware_crc", cdc_crc32c_hw()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
