/*
 * The inner loop of circular binary segmentation (see segment.py): for every arc (i, j] of a
 * region, the weighted t-statistic of its mean against the rest. O(m^2) per region, which in
 * NumPy costs large temporary matrices; here it is a plain double loop over prefix sums.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>

static PyObject *best_arc(PyObject *self, PyObject *args) {
    PyObject *o_values, *o_weights;
    int min_bins;
    if (!PyArg_ParseTuple(args, "OOi", &o_values, &o_weights, &min_bins)) return NULL;
    Py_buffer values, weights;
    if (PyObject_GetBuffer(o_values, &values, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(o_weights, &weights, PyBUF_C_CONTIGUOUS) < 0) { PyBuffer_Release(&values); return NULL; }
    Py_ssize_t m = values.len / (Py_ssize_t)sizeof(double);
    if (values.itemsize != 8 || weights.itemsize != 8 || weights.len != values.len) {
        PyBuffer_Release(&values); PyBuffer_Release(&weights);
        PyErr_SetString(PyExc_ValueError, "values and weights must be float64 arrays of one length");
        return NULL;
    }
    const double *x = values.buf, *w = weights.buf;
    double *cw = malloc((m + 1) * sizeof(double)), *cx = malloc((m + 1) * sizeof(double));
    if (!cw || !cx) { free(cw); free(cx); PyBuffer_Release(&values); PyBuffer_Release(&weights); return PyErr_NoMemory(); }
    /* T^2 = (x_in W - X w_in)^2 / (W w_in (W - w_in)) after putting x_out = X - x_in, w_out = W - w_in
     * over one denominator; comparing numerator against best * denominator keeps divisions and
     * square roots out of the O(m^2) loop, which they would otherwise dominate. */
    double best_numerator = 0.0, best_denominator = 1.0;
    double best = 0.0;
    Py_ssize_t best_i = 0, best_j = 0;
    Py_BEGIN_ALLOW_THREADS
    cw[0] = 0.0; cx[0] = 0.0;
    for (Py_ssize_t k = 0; k < m; k++) { cw[k + 1] = cw[k] + w[k]; cx[k + 1] = cx[k] + w[k] * x[k]; }
    const double total_w = cw[m], total_x = cx[m];
    for (Py_ssize_t i = 0; i < m; i++) {
        const double cw_i = cw[i], cx_i = cx[i];
        Py_ssize_t last = i + (m - min_bins);
        if (last > m) last = m;
        for (Py_ssize_t j = i + min_bins; j <= last; j++) {
            const double w_in = cw[j] - cw_i, w_out = total_w - w_in;
            if (w_in <= 0 || w_out <= 0) continue;
            const double difference = (cx[j] - cx_i) * total_w - total_x * w_in;
            const double numerator = difference * difference, denominator = w_in * w_out;
            if (numerator * best_denominator > best_numerator * denominator) {
                best_numerator = numerator; best_denominator = denominator; best_i = i; best_j = j;
            }
        }
    }
    best = (best_numerator > 0 && total_w > 0) ? sqrt(best_numerator / (best_denominator * total_w)) : 0.0;
    Py_END_ALLOW_THREADS
    free(cw); free(cx);
    PyBuffer_Release(&values); PyBuffer_Release(&weights);
    return Py_BuildValue("(dnn)", best, best_i, best_j);
}

static PyMethodDef methods[] = {
    {"best_arc", best_arc, METH_VARARGS, "best_arc(values, weights, min_bins) -> (t, i, j)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_segmentkernel", "Segmentation kernel.", -1, methods};

PyMODINIT_FUNC PyInit__segmentkernel(void) { return PyModule_Create(&module); }
