/* speedups.h -- declarations shared by the files of cdc.format._speedups.
 *
 * The extension is optional: every function here is a drop-in for a pure-Python reference
 * (cdc/format/wal.py, cdc/capture/build.py) and must give exactly the same objects/bytes,
 * or stop and hand the input back to Python. Nothing here may crash on any input: every read
 * is bounds-checked and anything unexpected returns control to the Python path.
 */
#ifndef CDC_SPEEDUPS_H
#define CDC_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stddef.h>

/* crc32c.c */
void cdc_crc32c_init(void);
int cdc_crc32c_hw(void);                                   /* 1 when the SSE4.2 path is in use */
uint32_t cdc_crc32c(uint32_t crc, const uint8_t *p, size_t n);       /* best available */
uint32_t cdc_crc32c_table(uint32_t crc, const uint8_t *p, size_t n); /* portable fallback */

/* walscan.c */
int cdc_walscan_init(void);
PyObject *cdc_set_wal_types(PyObject *self, PyObject *args);
PyObject *cdc_scan_simple(PyObject *self, PyObject *args);

/* build.c */
int cdc_build_init(void);
PyObject *cdc_set_event_type(PyObject *self, PyObject *args);
PyObject *cdc_build_plain(PyObject *self, PyObject *args);
PyObject *cdc_json_str(PyObject *self, PyObject *arg);
PyObject *cdc_utf8_valid(PyObject *self, PyObject *arg);

/* chunk.c */
PyObject *cdc_encode_run(PyObject *self, PyObject *args);

/* a new instance of a tuple subclass (a NamedTuple) holding n items stolen from items[] */
static inline PyObject *cdc_new_tuple(PyTypeObject *cls, PyObject **items, Py_ssize_t n)
{
    PyObject *t = cls->tp_alloc(cls, n);
    if (t == NULL) {
        for (Py_ssize_t k = 0; k < n; k++)
            Py_XDECREF(items[k]);
        return NULL;
    }
    int atomic = 1;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyTuple_SET_ITEM(t, k, items[k]);
        if (PyObject_IS_GC(items[k]) && PyObject_GC_IsTracked(items[k]))
            atomic = 0;
    }
    /* Like the GC's own untracking of tuples of atoms (it does it for exact tuples only): a
     * tuple of untracked objects cannot be part of a cycle, and leaving it tracked makes every
     * young-generation collection walk it (the hot paths build ~1M of them per second). */
    if (atomic)
        PyObject_GC_UnTrack(t);
    return t;
}

/* 1 when cls is a plain tuple subclass (NamedTuple: no extra slots, no __dict__) */
int cdc_is_plain_tuple_class(PyObject *cls);

#endif
