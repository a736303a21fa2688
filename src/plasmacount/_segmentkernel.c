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
    double best = 0.0;
    Py_ssize_t best_i = 0, best_j = 0;
    Py_BEGIN_ALLOW_THREADS
    cw[0] = 0.0; cx[0] = 0.0;
    for (Py_ssize_t k = 0; k < m; k++) { cw[k + 1] = cw[k] + w[k]; cx[k + 1] = cx[k] + w[k] * x[k]; }
    double total_w = cw[m], total_x = cx[m];
    for (Py_ssize_t i = 0; i < m; i++) {
        for (Py_ssize_t j = i + min_bins; j <= m; j++) {
            if (m - (j - i) < min_bins) break;
            double w_in = cw[j] - cw[i], w_out = total_w - w_in;
            if (w_in <= 0 || w_out <= 0) continue;
            double x_in = cx[j] - cx[i];
            double t = fabs((x_in / w_in - (total_x - x_in) / w_out) / sqrt(1.0 / w_in + 1.0 / w_out));
            if (t > best) { best = t; best_i = i; best_j = j; }
        }
    }
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
