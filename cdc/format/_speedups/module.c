/* module.c -- the cdc.format._speedups extension module: method table and initialisation.
 *
 * Loaded (optionally) by cdc/format/speedups.py; every function is a drop-in for a pure-Python
 * reference that stays the fallback (CDC_NO_SPEEDUPS=1 or no C compiler at install time):
 *   scan_simple   -- cdc.format.wal._scan_simple_records   (walscan.c)
 *   build_plain   -- the put path of cdc.capture.build.build_events (build.c)
 *   encode_run    -- the loop of cdc.model.chunk.encode_chunk (chunk.c; the journal's packer)
 *   crc32c        -- crc32c.crc32c                          (crc32c.c)
 *   json_str      -- msgspec.json.encode(bytes.decode()) or None when not UTF-8 (build.c)
 * Invariant: same objects / bytes as the Python reference, or a hand-back to Python.
 */
#include "speedups.h"

static PyObject *py_crc32c(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned int crc = 0;
    int table = 0;
    if (!PyArg_ParseTuple(args, "y*|Ip:crc32c", &view, &crc, &table))
        return NULL;
    uint32_t c = table ? cdc_crc32c_table(crc, view.buf, (size_t)view.len) : cdc_crc32c(crc, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef methods[] = {
    {"set_wal_types", cdc_set_wal_types, METH_VARARGS, "set_wal_types(Batch, Op): the NamedTuples scan_simple builds."},
    {"scan_simple", cdc_scan_simple, METH_VARARGS,
     "scan_simple(buf, base, i, log_number, leveldb) -> (batches, end_i): see walscan.c."},
    {"set_event_type", cdc_set_event_type, METH_VARARGS, "set_event_type(PreEncoded): the NamedTuple build_plain builds."},
    {"build_plain", cdc_build_plain, METH_VARARGS, "build_plain(...): see build.c."},
    {"encode_run", cdc_encode_run, METH_VARARGS,
     "encode_run(items, start, first_id, ts, max_events, max_bytes) -> pieces of one journal chunk, or None: see chunk.c."},
    {"crc32c", py_crc32c, METH_VARARGS, "crc32c(data, crc=0, table=False) -> CRC32C (table=True forces the portable path)."},
    {"json_str", cdc_json_str, METH_O, "json_str(b) -> msgspec.json.encode(b.decode()), or None when b is not UTF-8."},
    {"utf8_valid", cdc_utf8_valid, METH_O, "utf8_valid(b) -> whether b.decode() succeeds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "cdc.format._speedups", "cdc's optional C hot paths (see module.c).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    cdc_crc32c_init();
    if (cdc_walscan_init() < 0 || cdc_build_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "crc32c_hw", cdc_crc32c_hw()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
