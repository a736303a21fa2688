/*
 * The compiled core of `plasmacount count` for BAM files.
 *
 * Counting a low-pass BAM is bounded by DEFLATE decompression, not by the work per read, so this
 * kernel reads BGZF blocks straight from a memory map, inflates them with libdeflate on several
 * threads (libdeflate is taken from the `deflate` wheel; Python hands us its function addresses,
 * so no headers or system library are needed at build time), and walks the records reading only
 * the fixed fields it needs. While the workers inflate window k+1, the calling thread walks
 * window k.
 *
 * The Python layer owns every output array (passed in as writable buffers) and all policy
 * (which contigs are binned, which flags are filtered); this file only applies it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef void *(*alloc_decompressor_fn)(void);
typedef void (*free_decompressor_fn)(void *);
typedef int (*deflate_decompress_fn)(void *, const void *, size_t, void *, size_t, size_t *);
typedef uint32_t (*crc32_fn)(uint32_t, const void *, size_t);

static alloc_decompressor_fn p_alloc_decompressor = NULL;
static free_decompressor_fn p_free_decompressor = NULL;
static deflate_decompress_fn p_deflate_decompress = NULL;
static crc32_fn p_crc32 = NULL;

/* Indices of the quality-control tallies; mirrored by QC_FIELDS in alignments.py. */
enum {
    QC_TOTAL, QC_UNMAPPED, QC_SECONDARY, QC_SUPPLEMENTARY, QC_MAPPED, QC_QCFAIL, QC_DUPLICATE,
    QC_LOW_MAPQ, QC_PAIRED_READS, QC_IMPROPER_PAIRS, QC_SECOND_MATES, QC_UNMARKED_DUPLICATES,
    QC_COUNTED, QC_COUNTED_PAIRS, QC_COUNTED_SINGLE, QC_OUTSIDE_BINS, QC_PAIRS_BY_GEOMETRY, QC_N_FIELDS
};

#define FLAG_PAIRED 0x1
#define FLAG_PROPER 0x2
#define FLAG_UNMAPPED 0x4
#define FLAG_MATE_UNMAPPED 0x8
#define FLAG_REVERSE 0x10
#define FLAG_MATE_REVERSE 0x20
#define FLAG_READ1 0x40
#define FLAG_SECONDARY 0x100
#define FLAG_QCFAIL 0x200
#define FLAG_DUPLICATE 0x400
#define FLAG_SUPPLEMENTARY 0x800

#define WINDOW_BLOCKS 128          /* 128 x 64 KiB = 8 MiB of inflated data per window */
#define BGZF_MAX_ISIZE 65536
#define CARRY_CAPACITY (4 << 20)   /* the largest record that may straddle two windows */

typedef struct {
    size_t *offset;   /* start of the DEFLATE payload in the file */
    uint32_t *csize;  /* payload size */
    uint32_t *isize;  /* inflated size */
    uint32_t *crc;
    size_t n;
} block_table;

typedef struct {
    const uint8_t *file;
    const block_table *blocks;
    size_t first, last;       /* block range [first, last) of this window */
    size_t *dest_offset;      /* per block of the window, relative to dest */
    uint8_t *dest;
    int thread_index, n_threads;
    void *decompressor;
    int error;                /* 0 ok, 1 inflate failure, 2 crc mismatch, 3 size mismatch */
    size_t error_block;
} inflate_job;

static void *inflate_worker(void *arg) {
    inflate_job *job = (inflate_job *)arg;
    job->error = 0;
    for (size_t b = job->first + job->thread_index; b < job->last; b += job->n_threads) {
        size_t k = b - job->first;
        size_t produced = 0;
        uint8_t *out = job->dest + job->dest_offset[k];
        uint32_t isize = job->blocks->isize[b];
        if (isize == 0) continue;
        int rc = p_deflate_decompress(job->decompressor, job->file + job->blocks->offset[b],
                                      job->blocks->csize[b], out, isize, &produced);
        if (rc != 0) { job->error = 1; job->error_block = b; return NULL; }
        if (produced != isize) { job->error = 3; job->error_block = b; return NULL; }
        if (p_crc32(0, out, isize) != job->blocks->crc[b]) {
            job->error = 2; job->error_block = b; return NULL;
        }
    }
    return NULL;
}

static inline int32_t le_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t le_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Scan up to `capacity` BGZF block headers from *pos into `table` (scanning a window at a time
 * keeps only that window's pages of the file resident). Returns 0, or an error code with a
 * message. `*last_was_eof` tells whether the last block scanned was the empty EOF marker. */
static int scan_blocks(const uint8_t *file, size_t size, size_t *pos_io, block_table *table,
                       size_t capacity, int *last_was_eof, char *message, size_t message_size) {
    size_t n = 0, pos = *pos_io;
    while (pos < size && n < capacity) {
        if (size - pos < 18) {
            snprintf(message, message_size, "truncated BGZF block header at byte %zu", pos);
            return 2;
        }
        const uint8_t *h = file + pos;
        if (h[0] != 31 || h[1] != 139 || h[2] != 8 || !(h[3] & 4)) {
            snprintf(message, message_size, "not a BGZF block at byte %zu", pos);
            return 3;
        }
        uint16_t xlen = le_u16(h + 10);
        size_t bsize = 0;
        size_t x = 0;
        if (size - pos < 12 + (size_t)xlen) {
            snprintf(message, message_size, "truncated BGZF block header at byte %zu", pos);
            return 2;
        }
        while (x + 4 <= xlen) {
            uint16_t slen = le_u16(h + 12 + x + 2);
            if (h[12 + x] == 66 && h[12 + x + 1] == 67 && slen == 2) {
                bsize = (size_t)le_u16(h + 12 + x + 4) + 1;
            }
            x += 4 + slen;
        }
        if (bsize == 0) {
            snprintf(message, message_size, "BGZF block without its size field at byte %zu", pos);
            return 3;
        }
        if (bsize > size - pos || bsize < (size_t)xlen + 20) {
            snprintf(message, message_size, "truncated BGZF block at byte %zu", pos);
            return 2;
        }
        table->offset[n] = pos + 12 + xlen;
        table->csize[n] = (uint32_t)(bsize - xlen - 20);
        memcpy(&table->crc[n], file + pos + bsize - 8, 4);
        memcpy(&table->isize[n], file + pos + bsize - 4, 4);
        if (table->isize[n] > BGZF_MAX_ISIZE) {
            snprintf(message, message_size, "BGZF block at byte %zu claims %u inflated bytes", pos,
                     table->isize[n]);
            return 3;
        }
        *last_was_eof = (table->isize[n] == 0);
        n++;
        pos += bsize;
    }
    table->n = n;
    *pos_io = pos;
    return 0;
}

typedef struct {
    /* configuration */
    int64_t n_refs;
    const int64_t *ref_bin_offset;   /* per BAM reference: first global bin, or -1 */
    const int64_t *ref_bin_count;    /* per BAM reference: number of bins */
    const int64_t *ref_other_index;  /* per BAM reference: row in the other-contig arrays, or -1 */
    int64_t bin_size;
    int min_mapq;
    int skip_duplicates, skip_qcfail, remove_unmarked_duplicates;
    int64_t short_low, short_high, long_low, long_high;
    int64_t hist_overflow;           /* index of the overflow bucket = longest tracked length + 1 */
    int64_t max_pair_length;         /* longest pair counted by its geometry alone (no proper flag) */
    /* outputs */
    int64_t *counts, *short_counts, *long_counts, *histogram;
    int64_t *other_counts, *other_histogram;
    int64_t *per_ref_counts, *qc;
    /* state */
    int64_t skip_bytes;              /* header bytes still to skip */
    int64_t previous_ref, previous_pos, record_index;
    int64_t dup_pos, dup_ref;
    int dup_n, dup_capacity;
    int64_t *dup_keys;
    char *error;
    size_t error_size;
} walk_state;

static int remember_if_new(walk_state *s, int64_t ref, int64_t pos, int64_t key) {
    if (ref != s->dup_ref || pos != s->dup_pos) {
        s->dup_ref = ref; s->dup_pos = pos; s->dup_n = 0;
    }
    for (int i = 0; i < s->dup_n; i++) if (s->dup_keys[i] == key) return 0;
    if (s->dup_n == s->dup_capacity) {
        s->dup_capacity = s->dup_capacity ? 2 * s->dup_capacity : 64;
        s->dup_keys = realloc(s->dup_keys, s->dup_capacity * sizeof(int64_t));
        if (!s->dup_keys) return 1;
    }
    s->dup_keys[s->dup_n++] = key;
    return 1;
}

/* Walk complete records in data[0, len). Returns bytes consumed (the rest is an incomplete
 * record to carry), or -1 on error. */
static int64_t walk_records(walk_state *s, const uint8_t *data, int64_t len) {
    int64_t p = 0;
    if (s->skip_bytes > 0) {
        int64_t k = s->skip_bytes < len ? s->skip_bytes : len;
        s->skip_bytes -= k;
        p = k;
        if (s->skip_bytes > 0) return p;
    }
    int64_t *qc = s->qc;
    while (len - p >= 4) {
        int32_t block_size = le_i32(data + p);
        if (block_size < 32) {
            snprintf(s->error, s->error_size, "corrupt BAM record %lld (block size %d)",
                     (long long)s->record_index, block_size);
            return -1;
        }
        if (len - p < 4 + (int64_t)block_size) break;
        const uint8_t *r = data + p;
        p += 4 + (int64_t)block_size;
        s->record_index++;
        int32_t ref = le_i32(r + 4), pos = le_i32(r + 8);
        uint8_t mapq = r[13];
        uint16_t flag = le_u16(r + 18);
        int32_t next_ref = le_i32(r + 24), next_pos = le_i32(r + 28), tlen = le_i32(r + 32);

        /* Coordinate order: references ascending, unplaced (-1) last, positions ascending. */
        int64_t order_ref = ref < 0 ? INT64_MAX : ref;
        if (order_ref < s->previous_ref || (order_ref == s->previous_ref && pos < s->previous_pos)) {
            snprintf(s->error, s->error_size, "records are not coordinate-sorted (record %lld)",
                     (long long)s->record_index);
            return -1;
        }
        s->previous_ref = order_ref; s->previous_pos = pos;
        if (ref >= s->n_refs) {
            snprintf(s->error, s->error_size, "record %lld refers to reference %d, beyond the header",
                     (long long)s->record_index, ref);
            return -1;
        }

        qc[QC_TOTAL]++;
        if ((flag & FLAG_UNMAPPED) || ref < 0) { qc[QC_UNMAPPED]++; continue; }
        if (flag & FLAG_SECONDARY) { qc[QC_SECONDARY]++; continue; }
        if (flag & FLAG_SUPPLEMENTARY) { qc[QC_SUPPLEMENTARY]++; continue; }
        qc[QC_MAPPED]++;
        if (flag & FLAG_QCFAIL) { qc[QC_QCFAIL]++; if (s->skip_qcfail) continue; }
        if (flag & FLAG_DUPLICATE) { qc[QC_DUPLICATE]++; if (s->skip_duplicates) continue; }
        if (mapq < s->min_mapq) { qc[QC_LOW_MAPQ]++; continue; }
        int64_t fragment_length = -1;
        if (flag & FLAG_PAIRED) {
            qc[QC_PAIRED_READS]++;
            /* A fragment: mate on the same contig, and either marked proper by the aligner or
             * facing it (the leftmost read forward, the other reverse) within max_pair_length.
             * Both mates reach the same verdict. Mirrored by pair_is_fragment in alignments.py. */
            int64_t span = tlen < 0 ? -(int64_t)tlen : (int64_t)tlen;
            int same_contig = !(flag & FLAG_MATE_UNMAPPED) && next_ref == ref;
            int reverse = (flag & FLAG_REVERSE) != 0, mate_reverse = (flag & FLAG_MATE_REVERSE) != 0;
            int facing = reverse != mate_reverse && (pos == next_pos || (pos < next_pos) == !reverse);
            int by_geometry = !(flag & FLAG_PROPER) && facing && span > 0 && span <= s->max_pair_length;
            if (!same_contig || (!(flag & FLAG_PROPER) && !by_geometry)) {
                qc[QC_IMPROPER_PAIRS]++; continue;
            }
            int leftmost = pos < next_pos || (pos == next_pos && (flag & FLAG_READ1));
            if (!leftmost) { qc[QC_SECOND_MATES]++; continue; }
            if (by_geometry) qc[QC_PAIRS_BY_GEOMETRY]++;
            fragment_length = span;
        }
        if (s->remove_unmarked_duplicates) {
            int64_t key = ((fragment_length + 1) << 1) | ((flag & FLAG_REVERSE) ? 1 : 0);
            if (!remember_if_new(s, ref, pos, key)) { qc[QC_UNMARKED_DUPLICATES]++; continue; }
        }
        s->per_ref_counts[ref]++;
        int64_t bin_offset = s->ref_bin_offset[ref];
        if (bin_offset >= 0) {
            int64_t b = pos / s->bin_size;
            if (b >= s->ref_bin_count[ref]) { qc[QC_OUTSIDE_BINS]++; continue; }
            b += bin_offset;
            s->counts[b]++;
            qc[QC_COUNTED]++;
            if (fragment_length >= 0) {
                qc[QC_COUNTED_PAIRS]++;
                int64_t h = fragment_length < s->hist_overflow ? fragment_length : s->hist_overflow;
                s->histogram[h]++;
                if (fragment_length >= s->short_low && fragment_length <= s->short_high)
                    s->short_counts[b]++;
                if (fragment_length >= s->long_low && fragment_length <= s->long_high)
                    s->long_counts[b]++;
            } else {
                qc[QC_COUNTED_SINGLE]++;
            }
        } else {
            int64_t o = s->ref_other_index[ref];
            if (o < 0) { qc[QC_OUTSIDE_BINS]++; continue; }
            s->other_counts[o]++;
            if (fragment_length >= 0) {
                int64_t h = fragment_length < s->hist_overflow ? fragment_length : s->hist_overflow;
                s->other_histogram[o * (s->hist_overflow + 1) + h]++;
            }
        }
    }
    return p;
}

typedef struct {
    Py_buffer view;
    int held;
} held_buffer;

static int get_int64_buffer(PyObject *obj, held_buffer *b, Py_ssize_t min_items, int writable,
                            const char *name) {
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    b->held = 1;
    if (b->view.itemsize != 8 || b->view.len / 8 < min_items) {
        PyErr_Format(PyExc_ValueError, "buffer %s: expected at least %zd int64 items", name,
                     min_items);
        return -1;
    }
    return 0;
}

static PyObject *kernel_set_libdeflate(PyObject *self, PyObject *args) {
    unsigned long long a, f, d, c;
    if (!PyArg_ParseTuple(args, "KKKK", &a, &f, &d, &c)) return NULL;
    p_alloc_decompressor = (alloc_decompressor_fn)(uintptr_t)a;
    p_free_decompressor = (free_decompressor_fn)(uintptr_t)f;
    p_deflate_decompress = (deflate_decompress_fn)(uintptr_t)d;
    p_crc32 = (crc32_fn)(uintptr_t)c;
    Py_RETURN_NONE;
}

/*
 * count_bam(path, header_bytes, n_threads, ref_bin_offset, ref_bin_count, ref_other_index,
 *           bin_size, min_mapq, skip_duplicates, skip_qcfail, remove_unmarked_duplicates,
 *           short_low, short_high, long_low, long_high, hist_overflow,
 *           counts, short_counts, long_counts, histogram, other_counts, other_histogram,
 *           per_ref_counts, qc) -> None
 * Raises ValueError with a message on a truncated, corrupt or unsorted file.
 */
static PyObject *kernel_count_bam(PyObject *self, PyObject *args) {
    const char *path;
    long long header_bytes, bin_size, short_low, short_high, long_low, long_high, hist_overflow;
    int n_threads, min_mapq, skip_duplicates, skip_qcfail, remove_unmarked;
    long long max_pair_length;
    PyObject *o_ref_bin_offset, *o_ref_bin_count, *o_ref_other_index, *o_counts, *o_short,
        *o_long, *o_hist, *o_other_counts, *o_other_hist, *o_per_ref, *o_qc;
    if (!PyArg_ParseTuple(args, "sLiOOOLiiiiLLLLLLOOOOOOOO", &path, &header_bytes, &n_threads,
                          &o_ref_bin_offset, &o_ref_bin_count, &o_ref_other_index, &bin_size,
                          &min_mapq, &skip_duplicates, &skip_qcfail, &remove_unmarked, &short_low,
                          &short_high, &long_low, &long_high, &hist_overflow, &max_pair_length, &o_counts, &o_short,
                          &o_long, &o_hist, &o_other_counts, &o_other_hist, &o_per_ref, &o_qc))
        return NULL;
    if (!p_deflate_decompress) {
        PyErr_SetString(PyExc_RuntimeError, "libdeflate functions were not registered");
        return NULL;
    }
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;

    held_buffer bufs[11];
    memset(bufs, 0, sizeof(bufs));
    PyObject *result = NULL;
    uint8_t *file = MAP_FAILED;
    size_t file_size = 0;
    block_table tables[2];
    memset(tables, 0, sizeof(tables));
    uint8_t *buffer[2] = {NULL, NULL};
    size_t *dest_offset[2] = {NULL, NULL};
    void *decompressors[64];
    memset(decompressors, 0, sizeof(decompressors));
    char message[512] = {0};
    walk_state s;
    memset(&s, 0, sizeof(s));

    /* A reference header is enough to size the per-reference arrays. */
    if (get_int64_buffer(o_ref_bin_offset, &bufs[0], 0, 0, "ref_bin_offset") < 0) goto done;
    Py_ssize_t n_refs = bufs[0].view.len / 8;
    if (get_int64_buffer(o_ref_bin_count, &bufs[1], n_refs, 0, "ref_bin_count") < 0) goto done;
    if (get_int64_buffer(o_ref_other_index, &bufs[2], n_refs, 0, "ref_other_index") < 0) goto done;
    if (get_int64_buffer(o_counts, &bufs[3], 0, 1, "counts") < 0) goto done;
    if (get_int64_buffer(o_short, &bufs[4], bufs[3].view.len / 8, 1, "short") < 0) goto done;
    if (get_int64_buffer(o_long, &bufs[5], bufs[3].view.len / 8, 1, "long") < 0) goto done;
    if (get_int64_buffer(o_hist, &bufs[6], hist_overflow + 1, 1, "histogram") < 0) goto done;
    if (get_int64_buffer(o_other_counts, &bufs[7], 0, 1, "other_counts") < 0) goto done;
    if (get_int64_buffer(o_other_hist, &bufs[8], (bufs[7].view.len / 8) * (hist_overflow + 1), 1,
                         "other_histogram") < 0) goto done;
    if (get_int64_buffer(o_per_ref, &bufs[9], n_refs, 1, "per_ref_counts") < 0) goto done;
    if (get_int64_buffer(o_qc, &bufs[10], QC_N_FIELDS, 1, "qc") < 0) goto done;
    {
        const int64_t *ref_bin_offset = bufs[0].view.buf, *ref_bin_count = bufs[1].view.buf;
        int64_t n_bins = bufs[3].view.len / 8;
        for (Py_ssize_t i = 0; i < n_refs; i++) {
            if (ref_bin_offset[i] >= 0 && ref_bin_offset[i] + ref_bin_count[i] > n_bins) {
                PyErr_SetString(PyExc_ValueError, "reference bins exceed the counts array");
                goto done;
            }
        }
        if (bin_size <= 0) { PyErr_SetString(PyExc_ValueError, "bin_size must be positive"); goto done; }
    }

    int fd = open(path, O_RDONLY);
    if (fd < 0) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); goto done; }
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); goto done; }
    file_size = (size_t)st.st_size;
    if (file_size == 0) { close(fd); PyErr_SetString(PyExc_ValueError, "the file is empty"); goto done; }
    file = mmap(NULL, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (file == MAP_FAILED) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); goto done; }
    madvise(file, file_size, MADV_SEQUENTIAL);

    s.n_refs = n_refs;
    s.ref_bin_offset = bufs[0].view.buf;
    s.ref_bin_count = bufs[1].view.buf;
    s.ref_other_index = bufs[2].view.buf;
    s.bin_size = bin_size;
    s.min_mapq = min_mapq;
    s.skip_duplicates = skip_duplicates;
    s.skip_qcfail = skip_qcfail;
    s.remove_unmarked_duplicates = remove_unmarked;
    s.short_low = short_low; s.short_high = short_high;
    s.long_low = long_low; s.long_high = long_high;
    s.hist_overflow = hist_overflow;
    s.max_pair_length = max_pair_length;
    s.counts = bufs[3].view.buf; s.short_counts = bufs[4].view.buf; s.long_counts = bufs[5].view.buf;
    s.histogram = bufs[6].view.buf; s.other_counts = bufs[7].view.buf;
    s.other_histogram = bufs[8].view.buf; s.per_ref_counts = bufs[9].view.buf; s.qc = bufs[10].view.buf;
    s.skip_bytes = header_bytes;
    s.previous_ref = -1; s.previous_pos = -1; s.dup_ref = -2; s.dup_pos = -2;
    s.error = message; s.error_size = sizeof(message);

    int failed = 0;
    int64_t carry = 0;
    Py_BEGIN_ALLOW_THREADS
    size_t window_capacity = (size_t)WINDOW_BLOCKS * BGZF_MAX_ISIZE;
    for (int i = 0; i < 2; i++) {
        buffer[i] = malloc(CARRY_CAPACITY + window_capacity);
        dest_offset[i] = malloc(WINDOW_BLOCKS * sizeof(size_t));
        tables[i].offset = malloc(WINDOW_BLOCKS * sizeof(size_t));
        tables[i].csize = malloc(WINDOW_BLOCKS * sizeof(uint32_t));
        tables[i].isize = malloc(WINDOW_BLOCKS * sizeof(uint32_t));
        tables[i].crc = malloc(WINDOW_BLOCKS * sizeof(uint32_t));
        if (!buffer[i] || !dest_offset[i] || !tables[i].offset || !tables[i].csize || !tables[i].isize || !tables[i].crc) {
            failed = 1; snprintf(message, sizeof(message), "out of memory");
        }
    }
    for (int t = 0; t < n_threads && !failed; t++) {
        decompressors[t] = p_alloc_decompressor();
        if (!decompressors[t]) { failed = 1; snprintf(message, sizeof(message), "out of memory"); }
    }
    inflate_job jobs[64];
    pthread_t threads[64];
    size_t window_bytes[2] = {0, 0};
    size_t window_end[2] = {0, 0};     /* file offset just past the window's last block */
    size_t file_pos = 0, released = 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int last_was_eof = 0;
    /* Scan the next window's blocks into slot `slot_`, lay it out and start its inflation.
     * Sets `have` to 0 when the file is exhausted. */
#define START_WINDOW(slot_, have)                                                             \
    do {                                                                                      \
        int rc_ = scan_blocks(file, file_size, &file_pos, &tables[slot_], WINDOW_BLOCKS,      \
                              &last_was_eof, message, sizeof(message));                       \
        if (rc_ != 0) { failed = 1; have = 0; break; }                                        \
        have = tables[slot_].n > 0;                                                           \
        if (!have) break;                                                                     \
        window_end[slot_] = file_pos;                                                         \
        size_t off_ = 0;                                                                      \
        for (size_t b_ = 0; b_ < tables[slot_].n; b_++) {                                     \
            dest_offset[slot_][b_] = off_;                                                    \
            off_ += tables[slot_].isize[b_];                                                  \
        }                                                                                     \
        window_bytes[slot_] = off_;                                                           \
        for (int t_ = 0; t_ < n_threads; t_++) {                                              \
            jobs[t_].file = file; jobs[t_].blocks = &tables[slot_];                           \
            jobs[t_].first = 0; jobs[t_].last = tables[slot_].n;                              \
            jobs[t_].dest_offset = dest_offset[slot_];                                        \
            jobs[t_].dest = buffer[slot_] + CARRY_CAPACITY;                                   \
            jobs[t_].thread_index = t_; jobs[t_].n_threads = n_threads;                       \
            jobs[t_].decompressor = decompressors[t_]; jobs[t_].error = 0;                    \
            if (pthread_create(&threads[t_], NULL, inflate_worker, &jobs[t_]) != 0) {         \
                inflate_worker(&jobs[t_]);                                                    \
                threads[t_] = 0;                                                              \
            }                                                                                 \
        }                                                                                     \
        running = n_threads;                                                                  \
    } while (0)

    int running = 0, have = 0, slot = 0;
    if (!failed) START_WINDOW(0, have);
    while (have && !failed) {
        /* Wait for the window in `slot`. */
        for (int t = 0; t < running; t++) if (threads[t]) pthread_join(threads[t], NULL);
        running = 0;
        for (int t = 0; t < n_threads; t++) {
            if (jobs[t].error) {
                failed = 1;
                snprintf(message, sizeof(message), "%s in the BGZF block at byte %zu (file corrupt)",
                         jobs[t].error == 2 ? "checksum mismatch" :
                         jobs[t].error == 3 ? "inflated size mismatch" : "invalid compressed data",
                         jobs[t].blocks->offset[jobs[t].error_block]);
            }
        }
        if (failed) break;
        /* Copy the carried partial record in front of this window's data. */
        if (carry > 0) {
            const uint8_t *src = buffer[1 - slot] + CARRY_CAPACITY + window_bytes[1 - slot] - carry;
            memmove(buffer[slot] + CARRY_CAPACITY - carry, src, (size_t)carry);
        }
        /* Start inflating the next window into the other buffer while this one is walked. */
        int next_have = 0;
        START_WINDOW(1 - slot, next_have);
        if (failed) break;
        int64_t available = carry + (int64_t)window_bytes[slot];
        int64_t used = walk_records(&s, buffer[slot] + CARRY_CAPACITY - carry, available);
        if (used < 0) { failed = 1; break; }
        carry = available - used;
        if (carry > CARRY_CAPACITY) {
            failed = 1;
            snprintf(message, sizeof(message), "a BAM record is larger than %d bytes", CARRY_CAPACITY);
            break;
        }
        /* Drop the compressed pages already inflated, so memory stays flat for any file size. */
        size_t drop_end = (window_end[slot] / page) * page;
        if (drop_end > released) {
            madvise(file + released, drop_end - released, MADV_DONTNEED);
            released = drop_end;
        }
        have = next_have;
        slot = 1 - slot;
    }
    for (int t = 0; t < running; t++) if (threads[t]) pthread_join(threads[t], NULL);
    if (!failed && !last_was_eof) {
        failed = 1;
        snprintf(message, sizeof(message), "the BGZF end-of-file marker is missing (file truncated)");
    }
    if (!failed && carry > 0) {
        failed = 1;
        snprintf(message, sizeof(message), "the file ends inside a BAM record (truncated)");
    }
    if (!failed && s.skip_bytes > 0) {
        failed = 1;
        snprintf(message, sizeof(message), "the file ends inside the BAM header (truncated)");
    }
    Py_END_ALLOW_THREADS
#undef START_WINDOW
    if (failed) {
        PyErr_SetString(PyExc_ValueError, message[0] ? message : "failed to read the BAM file");
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;

done:
    for (int i = 0; i < 11; i++) if (bufs[i].held) PyBuffer_Release(&bufs[i].view);
    for (int t = 0; t < 64; t++) if (decompressors[t]) p_free_decompressor(decompressors[t]);
    for (int i = 0; i < 2; i++) { free(buffer[i]); free(dest_offset[i]); }
    for (int i = 0; i < 2; i++) {
        free(tables[i].offset); free(tables[i].csize); free(tables[i].isize); free(tables[i].crc);
    }
    free(s.dup_keys);
    if (file != MAP_FAILED) munmap(file, file_size);
    return result;
}

static PyMethodDef kernel_methods[] = {
    {"set_libdeflate", kernel_set_libdeflate, METH_VARARGS,
     "Register libdeflate's alloc/free decompressor, deflate_decompress and crc32 addresses."},
    {"count_bam", kernel_count_bam, METH_VARARGS, "Count the records of a BAM file into bins."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef kernel_module = {PyModuleDef_HEAD_INIT, "_bamkernel",
                                           "Compiled BAM counting kernel.", -1, kernel_methods};

PyMODINIT_FUNC PyInit__bamkernel(void) { return PyModule_Create(&kernel_module); }
