/* walscan.c -- scan_simple: the WAL reader's hot loop (log framing + CRC32C + WriteBatch).
 *
 * Drop-in for cdc.format.wal._scan_simple_records (the pure-Python reference) that goes a bit
 * further: it decodes the leading run of legacy data records of the LogReader's window (FULL
 * records, and FIRST..LAST chains in the writer's exact shape, skipping block trailers like
 * LogReader.read_raw) whose CRC32C is valid and whose WriteBatch holds only records listed in
 * decode_batch() below, and stops at the first anything else (recyclable or metadata record,
 * zero header, bad CRC, a tag it does not handle, truncated field, count mismatch...). The
 * Python reader then handles that record as without this function.
 *
 * Invariant: every Batch/Op returned equals, field by field, what LogReader.read_raw +
 * _decode_batch give for the same bytes, and the end position is a resume point (tests/decoders/test_speedups_wal.py compares them). Never reads outside `buf`.
 */
#include "speedups.h"

static PyTypeObject *BatchType = NULL;
static PyTypeObject *OpType = NULL;
static PyObject *s_put, *s_delete, *s_merge, *s_single_delete, *s_delete_range;

int cdc_walscan_init(void)
{
    s_put = PyUnicode_InternFromString("put");
    s_delete = PyUnicode_InternFromString("delete");
    s_merge = PyUnicode_InternFromString("merge");
    s_single_delete = PyUnicode_InternFromString("single_delete");
    s_delete_range = PyUnicode_InternFromString("delete_range");
    if (!s_put || !s_delete || !s_merge || !s_single_delete || !s_delete_range)
        return -1;
    return 0;
}

int cdc_is_plain_tuple_class(PyObject *cls)
{
    if (!PyType_Check(cls))
        return 0;
    PyTypeObject *t = (PyTypeObject *)cls;
    return PyType_IsSubtype(t, &PyTuple_Type) && t->tp_basicsize == PyTuple_Type.tp_basicsize
        && t->tp_itemsize == PyTuple_Type.tp_itemsize && t->tp_dictoffset == 0;
}

PyObject *cdc_set_wal_types(PyObject *self, PyObject *args)
{
    PyObject *batch, *op;
    if (!PyArg_ParseTuple(args, "OO:set_wal_types", &batch, &op))
        return NULL;
    if (!cdc_is_plain_tuple_class(batch) || !cdc_is_plain_tuple_class(op)) {
        PyErr_SetString(PyExc_TypeError, "Batch and Op must be NamedTuple classes");
        return NULL;
    }
    Py_INCREF(batch);
    Py_INCREF(op);
    Py_XSETREF(BatchType, (PyTypeObject *)batch);
    Py_XSETREF(OpType, (PyTypeObject *)op);
    Py_RETURN_NONE;
}

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* _varint_slow(data, pos, 28): at most 5 bytes; 0 on success, -1 when short/overlong */
static inline int varint32(const uint8_t *p, size_t n, size_t *pos, uint64_t *out)
{
    uint64_t r = 0;
    size_t i = *pos;
    for (int shift = 0; shift <= 28; shift += 7) {
        if (i >= n)
            return -1;
        uint8_t b = p[i++];
        r |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *pos = i;
            *out = r;
            return 0;
        }
    }
    return -1;
}

/* a length-prefixed slice within p[0:n]; -1 when it does not fit (Python: IndexError) */
static inline int varstring(const uint8_t *p, size_t n, size_t *pos, size_t *start, size_t *len)
{
    uint64_t ln;
    if (varint32(p, n, pos, &ln) < 0)
        return -1;
    if (ln > n - *pos)
        return -1;
    *start = *pos;
    *len = (size_t)ln;
    *pos += (size_t)ln;
    return 0;
}

#define STOP ((PyObject *)1) /* not decodable here: hand the record to Python */

/* One WriteBatch -> Batch, or STOP, or NULL with an exception (memory). */
static PyObject *decode_batch(const uint8_t *p, size_t n, PyObject *log_number, long long offset, int leveldb)
{
    if (n < 12)
        return STOP;
    uint64_t seq0 = le64(p);
    uint32_t count = le32(p + 8);
    /* Op numbers stay in int64 (Python would go on; rare enough to leave to it) */
    if (seq0 > (uint64_t)INT64_MAX - count)
        return STOP;
    /* every record takes at least 2 bytes: a larger count is a mismatch for sure */
    if ((uint64_t)count > (n - 12) / 2 + 1)
        return STOP;
    PyObject *ops = PyList_New(count);
    if (ops == NULL)
        return NULL;
    size_t pos = 12;
    uint32_t k = 0;
    while (pos < n) {
        uint8_t tag = p[pos++];
        int has_cf = 0, nfields;
        PyObject *name;
        if (leveldb) {
            if (tag == 0x01) { name = s_put; nfields = 2; }
            else if (tag == 0x00) { name = s_delete; nfields = 1; }
            else goto stop;
        } else {
            switch (tag) {
            case 0x01: name = s_put; nfields = 2; break;
            case 0x05: name = s_put; nfields = 2; has_cf = 1; break;
            case 0x00: name = s_delete; nfields = 1; break;
            case 0x04: name = s_delete; nfields = 1; has_cf = 1; break;
            case 0x02: name = s_merge; nfields = 2; break;
            case 0x06: name = s_merge; nfields = 2; has_cf = 1; break;
            case 0x07: name = s_single_delete; nfields = 1; break;
            case 0x08: name = s_single_delete; nfields = 1; has_cf = 1; break;
            case 0x0F: name = s_delete_range; nfields = 2; break;
            case 0x0E: name = s_delete_range; nfields = 2; has_cf = 1; break;
            default: goto stop; /* LogData, 2PC markers, Noop, blob index, entity, timed put... */
            }
        }
        uint64_t cf = 0;
        if (has_cf && varint32(p, n, &pos, &cf) < 0)
            goto stop;
        size_t ks, kl, vs = 0, vl = 0;
        if (varstring(p, n, &pos, &ks, &kl) < 0)
            goto stop;
        if (nfields == 2 && varstring(p, n, &pos, &vs, &vl) < 0)
            goto stop;
        if (k >= count)
            goto stop; /* more records than the header says */
        PyObject *it[7];
        it[0] = PyLong_FromLongLong((long long)(seq0 + k));
        Py_INCREF(name);
        it[1] = name;
        it[2] = PyLong_FromUnsignedLongLong(cf);
        it[3] = PyBytes_FromStringAndSize((const char *)p + ks, (Py_ssize_t)kl);
        if (nfields == 2)
            it[4] = PyBytes_FromStringAndSize((const char *)p + vs, (Py_ssize_t)vl);
        else {
            Py_INCREF(Py_None);
            it[4] = Py_None;
        }
        Py_INCREF(Py_None);
        it[5] = Py_None;
        Py_INCREF(Py_None);
        it[6] = Py_None;
        if (name == s_delete_range) { /* end_key, value = value, None */
            PyObject *tmp = it[5];
            it[5] = it[4];
            it[4] = tmp;
        }
        if (!it[0] || !it[2] || !it[3] || !it[4] || !it[5]) {
            for (int j = 0; j < 7; j++)
                Py_XDECREF(it[j]);
            Py_DECREF(ops);
            return NULL;
        }
        PyObject *op = cdc_new_tuple(OpType, it, 7);
        if (op == NULL) {
            Py_DECREF(ops);
            return NULL;
        }
        PyList_SET_ITEM(ops, k, op);
        k++;
    }
    if (k != count)
        goto stop;
    {
        PyObject *it[5];
        Py_INCREF(log_number);
        it[0] = log_number;
        it[1] = PyLong_FromLongLong(offset);
        it[2] = PyLong_FromUnsignedLongLong(seq0);
        it[3] = PyLong_FromUnsignedLong(count);
        it[4] = ops;
        if (!it[1] || !it[2] || !it[3]) {
            for (int j = 0; j < 5; j++)
                Py_XDECREF(it[j]);
            return NULL;
        }
        return cdc_new_tuple(BatchType, it, 5);
    }
stop:
    Py_DECREF(ops); /* unfilled slots are NULL: list dealloc skips them */
    return STOP;
}

/* 1 when the physical record at h (header + payload of `length` bytes) has a valid CRC32C */
static inline int crc_ok(const uint8_t *h, Py_ssize_t length)
{
    uint32_t c = cdc_crc32c(0, h + 6, (size_t)(length + 1));
    return (uint32_t)(((c >> 15) | (c << 17)) + 0xA282EAD8u) == le32(h);
}

/* A legacy FIRST fragment at buf[i] (checked: CRC, fits its block) followed by MIDDLEs that fill
 * whole blocks and a LAST at a block start, all with valid CRCs and all within buf: the joined
 * payload in a new PyMem buffer (*out, *out_len) and the end of the LAST in *end; 0 when the
 * fragments are not exactly that shape (Python's reader then handles them), -1 on no memory. */
static int join_fragments(const uint8_t *buf, Py_ssize_t nbuf, Py_ssize_t i, Py_ssize_t block_end,
                          uint8_t **out, size_t *out_len, Py_ssize_t *end)
{
    size_t total = 0;
    Py_ssize_t j = block_end;
    for (;;) { /* pass 1: check the chain, measure it */
        if (j + 7 > nbuf)
            return 0;
        const uint8_t *h = buf + j;
        Py_ssize_t length = (Py_ssize_t)(h[4] | (h[5] << 8));
        if (j + 7 + length > nbuf || 7 + length > 32768)
            return 0;
        if (h[6] == 3) {
            if (7 + length != 32768 || !crc_ok(h, length))
                return 0;
            total += (size_t)length;
            j += 32768;
            continue;
        }
        if (h[6] != 4 || !crc_ok(h, length))
            return 0;
        total += (size_t)length;
        *end = j + 7 + length;
        break;
    }
    Py_ssize_t first_len = block_end - (i + 7);
    total += (size_t)first_len;
    uint8_t *p = PyMem_Malloc(total ? total : 1);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p, buf + i + 7, (size_t)first_len);
    size_t at = (size_t)first_len;
    for (j = block_end; j < *end; j += 32768) {
        Py_ssize_t length = (Py_ssize_t)(buf[j + 4] | (buf[j + 5] << 8));
        memcpy(p + at, buf + j + 7, (size_t)length);
        at += (size_t)length;
    }
    *out = p;
    *out_len = total;
    return 1;
}

/* scan_simple(buf: bytes, base: int, i: int, log_number: int, leveldb: bool) -> (list[Batch], end_i)
 *
 * Decodes the leading run of legacy data records of the LogReader window (buf, base, i): FULL
 * records, and FIRST/MIDDLE/LAST chains in the writer's exact shape (FIRST to its block's end,
 * MIDDLEs filling whole blocks, LAST at a block start), skipping the trailers between blocks as
 * LogReader.read_raw does. Stops (end_i = the start of that record) at anything else: a bad
 * CRC, another record type (recyclable, metadata, zero header), a record not wholly in buf, a
 * batch decode_batch leaves to Python. Everything consumed is what read_raw + _decode_batch
 * would return for those bytes, so LogReader.consume(base + end_i) keeps the reader's
 * invariants (resume offset after the last returned record). */
PyObject *cdc_scan_simple(PyObject *self, PyObject *args)
{
    PyObject *bufobj, *log_number;
    long long base;
    Py_ssize_t i;
    int leveldb;
    if (!PyArg_ParseTuple(args, "O!LnOp:scan_simple", &PyBytes_Type, &bufobj, &base, &i, &log_number, &leveldb))
        return NULL;
    if (BatchType == NULL || OpType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_wal_types() was not called");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(bufobj);
    Py_ssize_t nbuf = PyBytes_GET_SIZE(bufobj);
    if (base < 0 || i < 0 || i > nbuf)
        goto done; /* not a window LogReader gives: leave everything to Python */
    long long boff = base % 32768;
    for (;;) {
        Py_ssize_t avail = nbuf - i;
        if (avail <= 0)
            break;
        Py_ssize_t block_left = 32768 - (Py_ssize_t)((boff + i) % 32768);
        if (block_left < 7) {
            /* trailer: zero padding up to the block end, skipped once bytes beyond it are known */
            if (avail > block_left) {
                i += block_left;
                continue;
            }
            break;
        }
        if (avail < 7)
            break;
        const uint8_t *h = buf + i;
        Py_ssize_t length = (Py_ssize_t)(h[4] | (h[5] << 8));
        Py_ssize_t e = i + 7 + length;
        if (7 + length > block_left || e > nbuf || (h[6] != 1 && h[6] != 2))
            break;
        if (!crc_ok(h, length))
            break;
        PyObject *b;
        Py_ssize_t next;
        if (h[6] == 1) {
            b = decode_batch(h + 7, (size_t)length, log_number, base + i, leveldb);
            next = e;
        } else {
            if (e != i + block_left)
                break; /* a FIRST that does not fill its block: not the writer's shape */
            uint8_t *joined;
            size_t jlen;
            int rc = join_fragments(buf, nbuf, i, e, &joined, &jlen, &next);
            if (rc == 0)
                break;
            if (rc < 0) {
                Py_DECREF(out);
                return NULL;
            }
            b = decode_batch(joined, jlen, log_number, base + i, leveldb);
            PyMem_Free(joined);
        }
        if (b == STOP)
            break;
        if (b == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        int rc = PyList_Append(out, b);
        Py_DECREF(b);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
        i = next;
    }
done:
    return Py_BuildValue("(Nn)", out, i);
}
