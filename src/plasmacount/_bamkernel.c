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
typedef void *(*alloc_compressor_fn)(int);
typedef void (*free_compressor_fn)(void *);
typedef size_t (*deflate_compress_fn)(void *, const void *, size_t, void *, size_t);
static alloc_compressor_fn p_alloc_compressor = NULL;
static free_compressor_fn p_free_compressor = NULL;
static deflate_compress_fn p_deflate_compress = NULL;

/* A=0, C=1, G=2, T=3 (either case), anything else 4. */
static uint8_t base_code[256];

/* Indices of the quality-control tallies; mirrored by QC_FIELDS in alignments.py. */
enum {
    QC_TOTAL, QC_UNMAPPED, QC_SECONDARY, QC_SUPPLEMENTARY, QC_MAPPED, QC_QCFAIL, QC_DUPLICATE,
    QC_LOW_MAPQ, QC_PAIRED_READS, QC_IMPROPER_PAIRS, QC_SECOND_MATES, QC_UNMARKED_DUPLICATES,
    QC_COUNTED, QC_COUNTED_PAIRS, QC_COUNTED_SINGLE, QC_OUTSIDE_BINS, QC_PAIRS_BY_GEOMETRY, QC_OUTSIDE_LENGTHS, QC_N_FIELDS
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
    uint32_t *skip;   /* inflated bytes dropped at the block's start (reading by index: a chunk starts inside it) */
    uint32_t *keep;   /* inflated bytes kept after those (isize, unless a chunk ends inside the block) */
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
    uint8_t *scratch;         /* BGZF_MAX_ISIZE bytes for a block kept only in part */
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
        uint32_t skip = job->blocks->skip[b], keep = job->blocks->keep[b];
        int partial = skip != 0 || keep != isize;
        uint8_t *target = partial ? job->scratch : out;
        int rc = p_deflate_decompress(job->decompressor, job->file + job->blocks->offset[b],
                                      job->blocks->csize[b], target, isize, &produced);
        if (rc != 0) { job->error = 1; job->error_block = b; return NULL; }
        if (produced != isize) { job->error = 3; job->error_block = b; return NULL; }
        if (p_crc32(0, target, isize) != job->blocks->crc[b]) {
            job->error = 2; job->error_block = b; return NULL;
        }
        if (partial) memcpy(out, target + skip, keep);
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
        table->skip[n] = 0;
        table->keep[n] = table->isize[n];
        n++;
        pos += bsize;
    }
    table->n = n;
    *pos_io = pos;
    return 0;
}

/* Reading by index: the chunks to read, as sorted, non-overlapping [begin, end) BGZF virtual
 * offsets (compressed block offset << 16 | offset inside the inflated block), and where the
 * scan is. The records of the chunks, laid end to end, are walked as one stream. */
typedef struct {
    const int64_t *chunks;
    size_t n_chunks, next;    /* chunk being scanned */
    size_t pos;               /* file offset of its next block */
    int started;
} chunk_scan;

/* Scan up to `capacity` blocks of the chunks into `table`, each with the part of it they hold. */
static int scan_chunk_blocks(const uint8_t *file, size_t size, chunk_scan *c, block_table *table,
                             size_t capacity, char *message, size_t message_size) {
    size_t n = 0;
    int eof = 0;
    while (n < capacity && c->next < c->n_chunks) {
        uint64_t begin = (uint64_t)c->chunks[2 * c->next], end = (uint64_t)c->chunks[2 * c->next + 1];
        size_t begin_block = (size_t)(begin >> 16), end_block = (size_t)(end >> 16);
        uint32_t begin_in = (uint32_t)(begin & 0xffff), end_in = (uint32_t)(end & 0xffff);
        if (!c->started) { c->pos = begin_block; c->started = 1; }
        if (c->pos > end_block || (c->pos == end_block && end_in == 0) || c->pos >= size) {
            c->next++; c->started = 0; continue;
        }
        size_t block = c->pos;
        block_table one = {table->offset + n, table->csize + n, table->isize + n, table->crc + n,
                           table->skip + n, table->keep + n, 0};
        int rc = scan_blocks(file, size, &c->pos, &one, 1, &eof, message, message_size);
        if (rc != 0) return rc;
        if (one.n == 0) { c->next++; c->started = 0; continue; }
        uint32_t isize = table->isize[n];
        uint32_t skip = block == begin_block ? begin_in : 0;
        uint32_t stop = block == end_block ? end_in : isize;
        if (skip > isize || stop > isize || stop < skip) {
            snprintf(message, message_size, "the index points outside the BGZF block at byte %zu (index stale?)", block);
            return 3;
        }
        table->skip[n] = skip;
        table->keep[n] = stop - skip;
        n++;
    }
    table->n = n;
    return 0;
}

/* Fragment files are written as BGZF from the walking thread: text is gathered into blocks of
 * at most BGZF_TEXT_BLOCK bytes (small enough that even incompressible text fits a block). */
#define BGZF_TEXT_BLOCK 64000
typedef struct {
    int64_t start, end;
    int32_t mapq;
    int32_t reverse;
} fragment_line;

typedef struct {
    FILE *file;
    void *compressor;
    uint8_t text[BGZF_TEXT_BLOCK + 256];
    size_t n;
    uint8_t block[BGZF_MAX_ISIZE];
    int failed;
    /* One contig's fragments are held and sorted before they are written: under the read-1
     * rule a fragment can start before the record that stands for it. */
    fragment_line *lines;
    size_t n_lines, capacity;
    int64_t ref;
    int sorted;
} bgzf_writer;

static void bgzf_flush(bgzf_writer *w) {
    if (w->n == 0 || w->failed) return;
    size_t size = p_deflate_compress(w->compressor, w->text, w->n, w->block + 18, BGZF_MAX_ISIZE - 26);
    if (size == 0) { w->failed = 1; return; }
    static const uint8_t header[16] = {31, 139, 8, 4, 0, 0, 0, 0, 0, 255, 6, 0, 66, 67, 2, 0};
    memcpy(w->block, header, 16);
    uint16_t bsize = (uint16_t)(18 + size + 8 - 1);
    memcpy(w->block + 16, &bsize, 2);
    uint32_t crc = p_crc32(0, w->text, w->n), isize = (uint32_t)w->n;
    memcpy(w->block + 18 + size, &crc, 4);
    memcpy(w->block + 22 + size, &isize, 4);
    if (fwrite(w->block, 1, 18 + size + 8, w->file) != 18 + size + 8) w->failed = 1;
    w->n = 0;
}

static void bgzf_write(bgzf_writer *w, const char *text, size_t n) {
    while (n > 0 && !w->failed) {
        size_t room = BGZF_TEXT_BLOCK - w->n, k = n < room ? n : room;
        memcpy(w->text + w->n, text, k);
        w->n += k; text += k; n -= k;
        if (w->n == BGZF_TEXT_BLOCK) bgzf_flush(w);
    }
}

static void bgzf_close(bgzf_writer *w) {
    static const uint8_t eof[28] = {31, 139, 8, 4, 0, 0, 0, 0, 0, 255, 6, 0, 66, 67, 2, 0,
                                    27, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    bgzf_flush(w);
    if (!w->failed && fwrite(eof, 1, 28, w->file) != 28) w->failed = 1;
}

static inline char *put_int(char *p, int64_t v) {
    char digits[24];
    int n = 0;
    if (v < 0) { *p++ = '-'; v = -v; }
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = digits[--n];
    return p;
}

static int compare_lines(const void *a, const void *b) {
    const fragment_line *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    if (x->mapq != y->mapq) return x->mapq < y->mapq ? -1 : 1;
    return x->reverse - y->reverse;
}

/* Write the held fragments of the contig `name`, sorted by start (then end, MAPQ, strand). */
static void write_held_lines(bgzf_writer *w, const char *name) {
    if (!w->sorted) qsort(w->lines, w->n_lines, sizeof(fragment_line), compare_lines);
    size_t name_length = strlen(name);
    if (name_length > 250) name_length = 250;
    char line[320];
    memcpy(line, name, name_length);
    for (size_t i = 0; i < w->n_lines && !w->failed; i++) {
        const fragment_line *f = &w->lines[i];
        char *p = line + name_length;
        *p++ = '\t'; p = put_int(p, f->start);
        *p++ = '\t'; p = put_int(p, f->end);
        *p++ = '\t'; p = put_int(p, f->mapq);
        *p++ = '\t'; *p++ = f->reverse ? '-' : '+';
        *p++ = '\n';
        bgzf_write(w, line, (size_t)(p - line));
    }
    w->n_lines = 0;
    w->sorted = 1;
}

static void hold_line(bgzf_writer *w, int64_t ref, const char *const *names, int64_t start, int64_t end, int mapq, int reverse) {
    if (ref != w->ref) {
        if (w->ref >= 0) write_held_lines(w, names[w->ref]);
        w->ref = ref;
    }
    if (w->n_lines == w->capacity) {
        size_t capacity = w->capacity ? 2 * w->capacity : 65536;
        fragment_line *lines = realloc(w->lines, capacity * sizeof(fragment_line));
        if (!lines) { w->failed = 1; return; }
        w->lines = lines; w->capacity = capacity;
    }
    fragment_line *f = &w->lines[w->n_lines];
    if (w->n_lines > 0 && compare_lines(&w->lines[w->n_lines - 1], &(fragment_line){start, end, mapq, reverse}) > 0) w->sorted = 0;
    f->start = start; f->end = end; f->mapq = mapq; f->reverse = reverse;
    w->n_lines++;
}

typedef struct {
    int64_t *data;
    size_t n, capacity;
} growable;

static int grow_push(growable *g, int64_t a, int64_t b, int64_t c, int64_t d) {
    if (g->n + 4 > g->capacity) {
        size_t capacity = g->capacity ? 2 * g->capacity : 4096;
        int64_t *data = realloc(g->data, capacity * sizeof(int64_t));
        if (!data) return 0;
        g->data = data; g->capacity = capacity;
    }
    g->data[g->n++] = a; g->data[g->n++] = b; g->data[g->n++] = c; g->data[g->n++] = d;
    return 1;
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
    int64_t min_length, max_length;  /* fragments of known length outside [min, max] are not counted (max < 0: none) */
    int read1_represents;            /* a pair is counted through read 1 */
    int forward_represents;          /* ... through its forward mate (else its leftmost mate) */
    int long_reads;                  /* a read without the paired flag is a whole molecule */
    int text_input;                  /* the input is a fragment file, not a BAM */
    int text_lengths_known;          /* its lines are fragments (else single-end reads) */
    int size_classes_by_midpoint;    /* short/long per bin by the fragment's midpoint (DELFI, FinaleToolkit), else its start */
    /* end motifs: k-mers read from an uncompressed, faidx-indexed FASTA held in a memory map */
    int motif_k;                     /* 0: no motifs */
    const uint8_t *fasta;
    size_t fasta_size;
    const int64_t *fai;              /* per BAM reference: offset, bases per line, bytes per line, length */
    int64_t *motif_counts, *motif_tallies;   /* 4^k counts; [ends counted, ends skipped] */
    /* molecules longer than the exact histogram, by log-spaced edges */
    const int64_t *long_edges;
    int64_t n_long_edges;
    int64_t *long_histogram;
    /* CpG methylation from MM/ML tags, one row per counted molecule with calls:
     * (global bin or -1, length or -1, calls, methylated calls) */
    int methylation;
    growable molecules;
    int keep_fragments;              /* also return every counted fragment: (reference, start, end, MAPQ x 2 + reverse) */
    growable fragments;
    int64_t *methylation_tallies;    /* [molecules with calls, calls, methylated calls, MM/ML unreadable] */
    /* fragment file output */
    bgzf_writer *writer;
    const char *const *ref_names;
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
    /* text input: the contig of the previous line, and which contigs were already passed */
    char line_contig[256];
    int64_t line_ref;
    uint8_t *ref_done;
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

static inline int reference_base(const walk_state *s, int64_t ref, int64_t p) {
    const int64_t *e = s->fai + 4 * ref;
    if (e[0] < 0 || p < 0 || p >= e[3]) return 4;
    size_t offset = (size_t)(e[0] + (p / e[1]) * e[2] + p % e[1]);
    return offset < s->fasta_size ? base_code[s->fasta[offset]] : 4;
}

/* The k-mer of one 5' end: read forward from `start`, or (the reverse strand's 5' end) backwards
 * from `end` - 1 and complemented. An end whose k-mer leaves the contig or holds a non-ACGT base
 * is tallied as skipped. */
static inline void count_end_motif(walk_state *s, int64_t ref, int64_t start, int64_t end, int forward) {
    int64_t index = 0;
    for (int i = 0; i < s->motif_k; i++) {
        int b = forward ? reference_base(s, ref, start + i) : reference_base(s, ref, end - 1 - i);
        if (b > 3) { s->motif_tallies[1]++; return; }
        index = index * 4 + (forward ? b : 3 - b);
    }
    s->motif_counts[index]++;
    s->motif_tallies[0]++;
}

/* Where a counted fragment [start, end) goes: its bin (by start; its size class by start or midpoint), the size tallies, its end
 * motifs, the fragment file. `length` is -1 when the fragment's length is unknown (a short
 * single-end read: only the read's own 5' end is a fragment end). */
static void tally_fragment(walk_state *s, int64_t ref, int64_t start, int64_t end, int64_t length, int mapq,
                           int reverse, int read1_reverse, int64_t calls, int64_t methylated) {
    int64_t *qc = s->qc;
    s->per_ref_counts[ref]++;
    if (s->motif_k > 0) {
        if (length >= 0) {
            count_end_motif(s, ref, start, end, 1);
            count_end_motif(s, ref, start, end, 0);
        } else {
            count_end_motif(s, ref, start, end, !reverse);
        }
    }
    if (s->writer) hold_line(s->writer, ref, s->ref_names, start, end, mapq, read1_reverse);
    if (s->keep_fragments > 0 && !grow_push(&s->fragments, ref, start, end, 2 * (int64_t)mapq + (read1_reverse ? 1 : 0)))
        s->keep_fragments = -1;
    int64_t global_bin = -1;
    int64_t bin_offset = s->ref_bin_offset[ref];
    if (length > 0 && length >= s->hist_overflow && s->n_long_edges > 0) {
        /* the last edge not above the length */
        int64_t lo = 0, hi = s->n_long_edges - 1;
        if (length >= s->long_edges[0]) {
            while (lo < hi) { int64_t mid = (lo + hi + 1) / 2; if (s->long_edges[mid] <= length) lo = mid; else hi = mid - 1; }
            if (bin_offset >= 0) s->long_histogram[lo]++;
        }
    }
    if (bin_offset >= 0) {
        int64_t b = start / s->bin_size;
        if (b >= s->ref_bin_count[ref]) { qc[QC_OUTSIDE_BINS]++; return; }
        b += bin_offset;
        global_bin = b;
        s->counts[b]++;
        qc[QC_COUNTED]++;
        if (length >= 0) {
            qc[QC_COUNTED_PAIRS]++;
            int64_t h = length < s->hist_overflow ? length : s->hist_overflow;
            s->histogram[h]++;
            int64_t sb = b;
            if (s->size_classes_by_midpoint) {
                sb = ((start + end) / 2) / s->bin_size;
                sb = (sb < s->ref_bin_count[ref] ? sb : s->ref_bin_count[ref] - 1) + bin_offset;
            }
            if (length >= s->short_low && length <= s->short_high) s->short_counts[sb]++;
            if (length >= s->long_low && length <= s->long_high) s->long_counts[sb]++;
        } else {
            qc[QC_COUNTED_SINGLE]++;
        }
    } else {
        int64_t o = s->ref_other_index[ref];
        if (o < 0) { qc[QC_OUTSIDE_BINS]++; return; }
        s->other_counts[o]++;
        if (length >= 0) {
            int64_t h = length < s->hist_overflow ? length : s->hist_overflow;
            s->other_histogram[o * (s->hist_overflow + 1) + h]++;
        }
    }
    if (calls > 0 && !grow_push(&s->molecules, global_bin, length, calls, methylated)) s->methylation = 0;
}

/* Bytes of one aux value of `type` at p (before end), or 0 if it runs past the record. */
static size_t aux_value_size(char type, const uint8_t *p, const uint8_t *end) {
    switch (type) {
    case 'A': case 'c': case 'C': return 1;
    case 's': case 'S': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'Z': case 'H': {
        const uint8_t *q = memchr(p, 0, (size_t)(end - p));
        return q ? (size_t)(q - p) + 1 : 0;
    }
    case 'B': {
        if (end - p < 5) return 0;
        char sub = (char)p[0];
        size_t item = (sub == 'c' || sub == 'C') ? 1 : (sub == 's' || sub == 'S') ? 2 : 4;
        uint32_t n; memcpy(&n, p + 1, 4);
        return 5 + (size_t)n * item;
    }
    default: return 0;
    }
}

/* The value of aux tag `tag` (its type in *type), or NULL. */
static const uint8_t *find_aux(const uint8_t *aux, const uint8_t *end, const char *tag, const char *alias, char *type) {
    while (end - aux >= 3) {
        char t = (char)aux[2];
        const uint8_t *value = aux + 3;
        size_t size = aux_value_size(t, value, end);
        if (size == 0 || value + size > end) return NULL;
        if ((aux[0] == tag[0] && aux[1] == tag[1]) || (aux[0] == alias[0] && aux[1] == alias[1])) {
            *type = t;
            return value;
        }
        aux = value + size;
    }
    return NULL;
}

/* The 5mC calls on the forward base C of a read: MM groups like "C+m?,0,3,1;" with their ML
 * probabilities (one per listed position and modification, in MM's order). Counts the listed
 * calls and those with ML >= 128. Returns 0, or 1 when MM and ML do not fit together. */
static int methylation_calls(const uint8_t *aux, const uint8_t *end, int64_t *calls, int64_t *methylated) {
    char mm_type = 0, ml_type = 0;
    const uint8_t *mm = find_aux(aux, end, "MM", "Mm", &mm_type);
    const uint8_t *ml = find_aux(aux, end, "ML", "Ml", &ml_type);
    *calls = *methylated = 0;
    if (!mm && !ml) return 0;
    if (!mm || !ml || mm_type != 'Z' || ml_type != 'B' || ml[0] != 'C') return 1;
    uint32_t n_ml; memcpy(&n_ml, ml + 1, 4);
    const uint8_t *probability = ml + 5;
    uint32_t used = 0;
    const char *p = (const char *)mm;
    while (*p) {
        /* base, strand, modification codes (letters, or one ChEBI number), optional . or ? */
        char base = p[0];
        if (!base || !p[1]) return 1;
        char strand = p[1];
        p += 2;
        int n_mods = 0, m_index = -1;
        if (*p >= '0' && *p <= '9') {
            while (*p >= '0' && *p <= '9') p++;
            n_mods = 1;
        } else {
            while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
                if (*p == 'm') m_index = n_mods;
                n_mods++; p++;
            }
        }
        if (n_mods == 0) return 1;
        if (*p == '.' || *p == '?') p++;
        uint32_t positions = 0;
        while (*p == ',') {
            p++;
            if (*p < '0' || *p > '9') return 1;
            while (*p >= '0' && *p <= '9') p++;
            positions++;
        }
        if (*p != ';') return 1;
        p++;
        if (used + (uint64_t)positions * n_mods > n_ml) return 1;
        if (base == 'C' && strand == '+' && m_index >= 0) {
            *calls += positions;
            for (uint32_t i = 0; i < positions; i++)
                if (probability[used + i * n_mods + m_index] >= 128) (*methylated)++;
        }
        used += positions * n_mods;
    }
    return used == n_ml ? 0 : 1;
}

/* The reference bases a record's alignment covers (M, D, N, =, X), from its CIGAR, or from its
 * CG tag when the CIGAR has more operations than BAM's 16-bit count holds. -1 if corrupt. */
static int64_t reference_span(const uint8_t *r, int32_t block_size) {
    uint8_t l_read_name = r[12];
    uint16_t n_cigar = le_u16(r + 16);
    int32_t l_seq = le_i32(r + 20);
    const uint8_t *end = r + 4 + block_size;
    const uint8_t *cigar = r + 36 + l_read_name;
    if (l_seq < 0 || cigar + 4 * (size_t)n_cigar > end) return -1;
    uint32_t n_ops = n_cigar;
    if (n_cigar == 2) {
        uint32_t first, second;
        memcpy(&first, cigar, 4); memcpy(&second, cigar + 4, 4);
        if ((first & 0xf) == 4 && (int64_t)(first >> 4) == l_seq && (second & 0xf) == 3) {
            const uint8_t *aux = cigar + 8 + (l_seq + 1) / 2 + l_seq;
            char type = 0;
            const uint8_t *cg = aux <= end ? find_aux(aux, end, "CG", "CG", &type) : NULL;
            if (cg && type == 'B' && (cg[0] == 'I' || cg[0] == 'i')) {
                memcpy(&n_ops, cg + 1, 4);
                cigar = cg + 5;
            }
        }
    }
    int64_t span = 0;
    for (uint32_t i = 0; i < n_ops; i++) {
        uint32_t op; memcpy(&op, cigar + 4 * (size_t)i, 4);
        uint32_t code = op & 0xf;
        if (code == 0 || code == 2 || code == 3 || code == 7 || code == 8) span += op >> 4;
    }
    return span;
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
    int need_span = s->motif_k > 0 || s->writer || s->long_reads || s->read1_represents;
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
        int64_t fragment_length = -1, start = pos, end = -1;
        int reverse = (flag & FLAG_REVERSE) != 0, read1_reverse = reverse;
        if (need_span) {
            int64_t span = reference_span(r, block_size);
            if (span < 0) {
                snprintf(s->error, s->error_size, "corrupt BAM record %lld (CIGAR beyond the record)",
                         (long long)s->record_index);
                return -1;
            }
            end = pos + span;
        }
        if (flag & FLAG_PAIRED) {
            qc[QC_PAIRED_READS]++;
            /* A fragment: mate on the same contig, and either marked proper by the aligner or
             * facing it (the leftmost read forward, the other reverse) within max_pair_length.
             * Both mates reach the same verdict. Mirrored by pair_is_fragment in alignments.py. */
            int64_t span = tlen < 0 ? -(int64_t)tlen : (int64_t)tlen;
            int same_contig = !(flag & FLAG_MATE_UNMAPPED) && next_ref == ref;
            int mate_reverse = (flag & FLAG_MATE_REVERSE) != 0;
            int facing = reverse != mate_reverse && (pos == next_pos || (pos < next_pos) == !reverse);
            int by_geometry = !(flag & FLAG_PROPER) && facing && span > 0 && span <= s->max_pair_length;
            if (!same_contig || (!(flag & FLAG_PROPER) && !by_geometry)) {
                qc[QC_IMPROPER_PAIRS]++; continue;
            }
            if (s->read1_represents) {
                /* FinaleToolkit's rule: read 1 stands for the pair, wherever it lies; the span
                 * runs from its start (TLEN > 0) or back from its end (TLEN < 0). */
                if (!(flag & FLAG_READ1) || tlen == 0) { qc[QC_SECOND_MATES]++; continue; }
                if (tlen > 0) { start = pos; end = pos + tlen; }
                else { start = end + tlen; }
            } else if (s->forward_represents && reverse != mate_reverse) {
                /* The forward mate stands for the pair and the fragment runs |TLEN| from its
                 * 5' end: right also when the reverse mate starts before it (a dovetailed pair). */
                if (reverse) { qc[QC_SECOND_MATES]++; continue; }
                start = pos; end = pos + span;
            } else {
                int leftmost = pos < next_pos || (pos == next_pos && (flag & FLAG_READ1));
                if (!leftmost) { qc[QC_SECOND_MATES]++; continue; }
                start = pos; end = pos + span;
            }
            if (by_geometry) qc[QC_PAIRS_BY_GEOMETRY]++;
            fragment_length = end - start;
            if (!(flag & FLAG_READ1)) read1_reverse = mate_reverse;
            if (start < 0) start = 0;
        } else if (s->long_reads) {
            fragment_length = end - pos;
        }
        if (fragment_length >= 0 && (fragment_length < s->min_length || (s->max_length >= 0 && fragment_length > s->max_length))) {
            qc[QC_OUTSIDE_LENGTHS]++; continue;
        }
        if (s->remove_unmarked_duplicates) {
            int64_t key = ((fragment_length + 1) << 1) | (reverse ? 1 : 0);
            if (!remember_if_new(s, ref, pos, key)) { qc[QC_UNMARKED_DUPLICATES]++; continue; }
        }
        int64_t calls = 0, methylated = 0;
        if (s->methylation) {
            uint8_t l_read_name = r[12];
            uint16_t n_cigar = le_u16(r + 16);
            int32_t l_seq = le_i32(r + 20);
            const uint8_t *aux = r + 36 + l_read_name + 4 * (size_t)n_cigar + (l_seq + 1) / 2 + l_seq;
            const uint8_t *record_end = r + 4 + block_size;
            if (aux <= record_end && methylation_calls(aux, record_end, &calls, &methylated) == 0) {
                if (calls > 0) {
                    s->methylation_tallies[0]++;
                    s->methylation_tallies[1] += calls;
                    s->methylation_tallies[2] += methylated;
                }
            } else {
                s->methylation_tallies[3]++;
                calls = methylated = 0;
            }
        }
        tally_fragment(s, ref, start, end, fragment_length, mapq, reverse, read1_reverse, calls, methylated);
    }
    return p;
}

/* A field of a fragment-file line: parse an integer, return the position after it, or NULL. */
static const uint8_t *parse_int(const uint8_t *p, const uint8_t *end, int64_t *value) {
    int64_t v = 0;
    const uint8_t *q = p;
    while (q < end && *q >= '0' && *q <= '9') { v = v * 10 + (*q - '0'); q++; }
    if (q == p) return NULL;
    *value = v;
    return q;
}

/* Walk complete lines of a fragment file (`chrom start end mapq strand`, or BED6 with a name
 * column before the score); '#' lines are comments. Returns bytes consumed, or -1 on error. */
static int64_t walk_lines(walk_state *s, const uint8_t *data, int64_t len) {
    int64_t p = 0;
    int64_t *qc = s->qc;
    while (p < len) {
        const uint8_t *line = data + p;
        const uint8_t *newline = memchr(line, '\n', (size_t)(len - p));
        if (!newline) break;
        p = newline - data + 1;
        s->record_index++;
        const uint8_t *end = newline;
        if (end > line && end[-1] == '\r') end--;
        if (end == line || line[0] == '#') continue;
        const uint8_t *tab = memchr(line, '\t', (size_t)(end - line));
        if (!tab || tab - line >= 255) {
            snprintf(s->error, s->error_size, "line %lld is not `chrom start end mapq strand`",
                     (long long)s->record_index);
            return -1;
        }
        size_t name_length = (size_t)(tab - line);
        if (s->line_ref < -1 || strlen(s->line_contig) != name_length || memcmp(s->line_contig, line, name_length) != 0) {
            if (s->line_ref >= 0) s->ref_done[s->line_ref] = 1;
            memcpy(s->line_contig, line, name_length);
            s->line_contig[name_length] = 0;
            s->line_ref = -1;
            for (int64_t i = 0; i < s->n_refs; i++)
                if (strcmp(s->ref_names[i], s->line_contig) == 0) { s->line_ref = i; break; }
            if (s->line_ref >= 0 && s->ref_done[s->line_ref]) {
                snprintf(s->error, s->error_size, "%s appears again at line %lld: the file is not sorted",
                         s->line_contig, (long long)s->record_index);
                return -1;
            }
            s->previous_pos = -1;
        }
        int64_t start = 0, stop = 0, mapq = 0;
        const uint8_t *q = parse_int(tab + 1, end, &start);
        if (q && q < end && *q == '\t') q = parse_int(q + 1, end, &stop); else q = NULL;
        if (q && q < end && *q == '\t') {
            const uint8_t *field = q + 1;
            q = parse_int(field, end, &mapq);
            if (!q || (q < end && *q != '\t')) {
                /* BED6: a name column, then the score as MAPQ */
                const uint8_t *next = memchr(field, '\t', (size_t)(end - field));
                q = next ? parse_int(next + 1, end, &mapq) : NULL;
            }
        } else q = NULL;
        if (!q || stop <= start) {
            snprintf(s->error, s->error_size, "line %lld is not `chrom start end mapq strand` with start < end",
                     (long long)s->record_index);
            return -1;
        }
        const uint8_t *strand = memchr(q, '\t', (size_t)(end - q));
        int read1_reverse = strand && strand + 1 < end && strand[1] == '-';
        qc[QC_TOTAL]++;
        if (s->line_ref < 0) { qc[QC_OUTSIDE_BINS]++; continue; }
        if (start < s->previous_pos) {
            snprintf(s->error, s->error_size, "line %lld starts before the line above it: the file is not sorted",
                     (long long)s->record_index);
            return -1;
        }
        s->previous_pos = start;
        qc[QC_MAPPED]++;
        if (mapq < s->min_mapq) { qc[QC_LOW_MAPQ]++; continue; }
        int64_t length = s->text_lengths_known ? stop - start : -1;
        if (length >= 0 && (length < s->min_length || (s->max_length >= 0 && length > s->max_length))) {
            qc[QC_OUTSIDE_LENGTHS]++; continue;
        }
        if (s->remove_unmarked_duplicates) {
            int64_t key = ((length + 1) << 1) | read1_reverse;
            if (!remember_if_new(s, s->line_ref, start, key)) { qc[QC_UNMARKED_DUPLICATES]++; continue; }
        }
        tally_fragment(s, s->line_ref, start, stop, length, (int)mapq, read1_reverse, read1_reverse, 0, 0);
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
    unsigned long long a, f, d, c, ca = 0, cf = 0, cd = 0;
    if (!PyArg_ParseTuple(args, "KKKK|KKK", &a, &f, &d, &c, &ca, &cf, &cd)) return NULL;
    p_alloc_decompressor = (alloc_decompressor_fn)(uintptr_t)a;
    p_free_decompressor = (free_decompressor_fn)(uintptr_t)f;
    p_deflate_decompress = (deflate_decompress_fn)(uintptr_t)d;
    p_crc32 = (crc32_fn)(uintptr_t)c;
    p_alloc_compressor = (alloc_compressor_fn)(uintptr_t)ca;
    p_free_compressor = (free_compressor_fn)(uintptr_t)cf;
    p_deflate_compress = (deflate_compress_fn)(uintptr_t)cd;
    Py_RETURN_NONE;
}

/* Map a whole file read-only; NULL with a Python error set on failure. */
static uint8_t *map_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); return NULL; }
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); return NULL; }
    *size = (size_t)st.st_size;
    if (*size == 0) { close(fd); PyErr_Format(PyExc_ValueError, "%s is empty", path); return NULL; }
    uint8_t *data = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); return NULL; }
    return data;
}

/*
 * count_bam(path, header_bytes, n_threads, ref_bin_offset, ref_bin_count, ref_other_index,
 *           bin_size, min_mapq, skip_duplicates, skip_qcfail, remove_unmarked_duplicates,
 *           short_low, short_high, long_low, long_high, hist_overflow, max_pair_length,
 *           counts, short_counts, long_counts, histogram, other_counts, other_histogram,
 *           per_ref_counts, qc, *, ref_names, read1_represents, forward_represents, long_reads, text_input,
 *           text_lengths_known, motif_k, fasta, fai, motif_counts, motif_tallies, long_edges,
 *           long_histogram, methylation, methylation_tallies, fragment_file, fragment_header,
 *           min_length, max_length,
 *           keep_fragments, size_classes_by_midpoint)
 *   -> (bytes of int64 rows (bin, length, calls, methylated) per molecule with CpG calls,
 *       bytes of int64 rows (reference, start, end, 2 MAPQ + read 1 reverse) per fragment if kept)
 * A BGZF fragment file is read instead of a BAM with text_input=1 (header_bytes 0).
 * Raises ValueError with a message on a truncated, corrupt or unsorted file.
 */
static PyObject *kernel_count_bam(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {
        "path", "header_bytes", "n_threads", "ref_bin_offset", "ref_bin_count", "ref_other_index",
        "bin_size", "min_mapq", "skip_duplicates", "skip_qcfail", "remove_unmarked_duplicates",
        "short_low", "short_high", "long_low", "long_high", "hist_overflow", "max_pair_length",
        "counts", "short_counts", "long_counts", "histogram", "other_counts", "other_histogram",
        "per_ref_counts", "qc", "ref_names", "read1_represents", "forward_represents", "long_reads", "text_input",
        "text_lengths_known", "motif_k", "fasta", "fai", "motif_counts", "motif_tallies",
        "long_edges", "long_histogram", "methylation", "methylation_tallies", "fragment_file",
        "fragment_header", "min_length", "max_length", "keep_fragments", "size_classes_by_midpoint", "chunks", NULL};
    const char *path;
    long long header_bytes, bin_size, short_low, short_high, long_low, long_high, hist_overflow;
    int n_threads, min_mapq, skip_duplicates, skip_qcfail, remove_unmarked;
    long long max_pair_length;
    PyObject *o_ref_bin_offset, *o_ref_bin_count, *o_ref_other_index, *o_counts, *o_short,
        *o_long, *o_hist, *o_other_counts, *o_other_hist, *o_per_ref, *o_qc;
    PyObject *o_ref_names = NULL, *o_fai = NULL, *o_motif_counts = NULL, *o_motif_tallies = NULL,
             *o_long_edges = NULL, *o_long_hist = NULL, *o_methylation_tallies = NULL, *o_chunks = NULL;
    int read1_represents = 0, forward_represents = 0, long_reads = 0, text_input = 0, text_lengths_known = 1, motif_k = 0,
        methylation = 0;
    const char *fasta_path = NULL, *fragment_path = NULL;
    Py_buffer fragment_header = {0};
    long long min_length = 0, max_length = -1;
    int keep_fragments = 0, size_classes_by_midpoint = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sLiOOOLiiiiLLLLLLOOOOOOOO|$OiiiiiizOOOOOiOzy*LLiiO", keywords,
                          &path, &header_bytes, &n_threads,
                          &o_ref_bin_offset, &o_ref_bin_count, &o_ref_other_index, &bin_size,
                          &min_mapq, &skip_duplicates, &skip_qcfail, &remove_unmarked, &short_low,
                          &short_high, &long_low, &long_high, &hist_overflow, &max_pair_length, &o_counts, &o_short,
                          &o_long, &o_hist, &o_other_counts, &o_other_hist, &o_per_ref, &o_qc,
                          &o_ref_names, &read1_represents, &forward_represents, &long_reads, &text_input, &text_lengths_known,
                          &motif_k, &fasta_path, &o_fai, &o_motif_counts, &o_motif_tallies, &o_long_edges,
                          &o_long_hist, &methylation, &o_methylation_tallies, &fragment_path, &fragment_header,
                          &min_length, &max_length, &keep_fragments, &size_classes_by_midpoint, &o_chunks))
        return NULL;
    if (!p_deflate_decompress) {
        PyErr_SetString(PyExc_RuntimeError, "libdeflate functions were not registered");
        return NULL;
    }
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;

    held_buffer bufs[19];
    memset(bufs, 0, sizeof(bufs));
    PyObject *result = NULL;
    uint8_t *file = MAP_FAILED;
    size_t file_size = 0;
    uint8_t *fasta = NULL;
    size_t fasta_size = 0;
    const char **names = NULL;
    bgzf_writer *writer = NULL;
    FILE *fragment_stream = NULL;
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
    if (motif_k > 0) {
        if (motif_k > 12 || !fasta_path || !o_fai || !o_motif_counts || !o_motif_tallies) {
            PyErr_SetString(PyExc_ValueError, "end motifs need k <= 12, fasta, fai, motif_counts and motif_tallies");
            goto done;
        }
        if (get_int64_buffer(o_fai, &bufs[11], 4 * n_refs, 0, "fai") < 0) goto done;
        if (get_int64_buffer(o_motif_counts, &bufs[12], (Py_ssize_t)1 << (2 * motif_k), 1, "motif_counts") < 0) goto done;
        if (get_int64_buffer(o_motif_tallies, &bufs[13], 2, 1, "motif_tallies") < 0) goto done;
        fasta = map_file(fasta_path, &fasta_size);
        if (!fasta) goto done;
    }
    if (o_long_edges && o_long_hist) {
        if (get_int64_buffer(o_long_edges, &bufs[14], 1, 0, "long_edges") < 0) goto done;
        if (get_int64_buffer(o_long_hist, &bufs[15], bufs[14].view.len / 8, 1, "long_histogram") < 0) goto done;
    }
    if (methylation) {
        if (!o_methylation_tallies) { PyErr_SetString(PyExc_ValueError, "methylation needs methylation_tallies"); goto done; }
        if (get_int64_buffer(o_methylation_tallies, &bufs[16], 4, 1, "methylation_tallies") < 0) goto done;
    }
    chunk_scan chunks = {0};
    if (o_chunks && o_chunks != Py_None) {
        if (text_input) { PyErr_SetString(PyExc_ValueError, "chunks need a BAM, not text"); goto done; }
        if (get_int64_buffer(o_chunks, &bufs[18], 0, 0, "chunks") < 0) goto done;
        chunks.chunks = bufs[18].view.buf;
        chunks.n_chunks = (size_t)(bufs[18].view.len / 16);
    }
    int by_index = chunks.chunks != NULL;
    if (fragment_path || text_input) {
        if (!o_ref_names || !PyTuple_Check(o_ref_names) || PyTuple_GET_SIZE(o_ref_names) != n_refs) {
            PyErr_SetString(PyExc_ValueError, "ref_names must be a tuple of one str per reference");
            goto done;
        }
        names = calloc((size_t)n_refs + 1, sizeof(char *));
        if (!names) { PyErr_NoMemory(); goto done; }
        for (Py_ssize_t i = 0; i < n_refs; i++) {
            names[i] = PyUnicode_AsUTF8(PyTuple_GET_ITEM(o_ref_names, i));
            if (!names[i]) goto done;
        }
    }
    if (fragment_path) {
        if (!p_deflate_compress) { PyErr_SetString(PyExc_RuntimeError, "libdeflate compressor not registered"); goto done; }
        writer = calloc(1, sizeof(bgzf_writer));
        if (!writer) { PyErr_NoMemory(); goto done; }
        writer->compressor = p_alloc_compressor(6);
        writer->ref = -1;
        writer->sorted = 1;
        fragment_stream = fopen(fragment_path, "wb");
        if (!fragment_stream) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, fragment_path); goto done; }
        writer->file = fragment_stream;
        if (fragment_header.buf && fragment_header.len > 0)
            bgzf_write(writer, fragment_header.buf, (size_t)fragment_header.len);
    }
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
    s.min_length = min_length; s.max_length = max_length;
    s.counts = bufs[3].view.buf; s.short_counts = bufs[4].view.buf; s.long_counts = bufs[5].view.buf;
    s.histogram = bufs[6].view.buf; s.other_counts = bufs[7].view.buf;
    s.other_histogram = bufs[8].view.buf; s.per_ref_counts = bufs[9].view.buf; s.qc = bufs[10].view.buf;
    s.skip_bytes = by_index ? 0 : header_bytes;   /* the chunks hold records only */
    s.previous_ref = -1; s.previous_pos = -1; s.dup_ref = -2; s.dup_pos = -2;
    s.error = message; s.error_size = sizeof(message);
    s.read1_represents = read1_represents;
    s.forward_represents = forward_represents;
    s.long_reads = long_reads;
    s.size_classes_by_midpoint = size_classes_by_midpoint;
    s.text_input = text_input;
    s.text_lengths_known = text_lengths_known;
    s.motif_k = motif_k;
    if (motif_k > 0) {
        s.fasta = fasta; s.fasta_size = fasta_size; s.fai = bufs[11].view.buf;
        s.motif_counts = bufs[12].view.buf; s.motif_tallies = bufs[13].view.buf;
    }
    if (bufs[15].held) {
        s.long_edges = bufs[14].view.buf; s.n_long_edges = bufs[14].view.len / 8;
        s.long_histogram = bufs[15].view.buf;
    }
    s.methylation = methylation;
    s.keep_fragments = keep_fragments;
    if (methylation) s.methylation_tallies = bufs[16].view.buf;
    s.writer = writer;
    s.ref_names = names;
    s.line_ref = -2;
    if (text_input) {
        s.ref_done = calloc((size_t)n_refs + 1, 1);
        if (!s.ref_done) { PyErr_NoMemory(); goto done; }
    }

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
        tables[i].skip = malloc(WINDOW_BLOCKS * sizeof(uint32_t));
        tables[i].keep = malloc(WINDOW_BLOCKS * sizeof(uint32_t));
        if (!buffer[i] || !dest_offset[i] || !tables[i].offset || !tables[i].csize || !tables[i].isize || !tables[i].crc
            || !tables[i].skip || !tables[i].keep) {
            failed = 1; snprintf(message, sizeof(message), "out of memory");
        }
    }
    uint8_t *scratch[64];
    memset(scratch, 0, sizeof(scratch));
    for (int t = 0; t < n_threads && !failed; t++) {
        decompressors[t] = p_alloc_decompressor();
        scratch[t] = by_index ? malloc(BGZF_MAX_ISIZE) : NULL;
        if (!decompressors[t] || (by_index && !scratch[t])) { failed = 1; snprintf(message, sizeof(message), "out of memory"); }
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
        int rc_ = by_index ? scan_chunk_blocks(file, file_size, &chunks, &tables[slot_],      \
                                               WINDOW_BLOCKS, message, sizeof(message))        \
                           : scan_blocks(file, file_size, &file_pos, &tables[slot_], WINDOW_BLOCKS, \
                                         &last_was_eof, message, sizeof(message));              \
        if (rc_ != 0) { failed = 1; have = 0; break; }                                        \
        have = tables[slot_].n > 0;                                                           \
        if (!have) break;                                                                     \
        window_end[slot_] = by_index ? chunks.pos : file_pos;                                 \
        size_t off_ = 0;                                                                      \
        for (size_t b_ = 0; b_ < tables[slot_].n; b_++) {                                     \
            dest_offset[slot_][b_] = off_;                                                    \
            off_ += tables[slot_].keep[b_];                                                   \
        }                                                                                     \
        window_bytes[slot_] = off_;                                                           \
        for (int t_ = 0; t_ < n_threads; t_++) {                                              \
            jobs[t_].file = file; jobs[t_].blocks = &tables[slot_];                           \
            jobs[t_].first = 0; jobs[t_].last = tables[slot_].n;                              \
            jobs[t_].dest_offset = dest_offset[slot_];                                        \
            jobs[t_].dest = buffer[slot_] + CARRY_CAPACITY;                                   \
            jobs[t_].thread_index = t_; jobs[t_].n_threads = n_threads;                       \
            jobs[t_].decompressor = decompressors[t_]; jobs[t_].scratch = scratch[t_];        \
            jobs[t_].error = 0;                                                               \
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
        int64_t used = text_input ? walk_lines(&s, buffer[slot] + CARRY_CAPACITY - carry, available)
                                  : walk_records(&s, buffer[slot] + CARRY_CAPACITY - carry, available);
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
    if (!failed && !by_index && !last_was_eof) {
        failed = 1;
        snprintf(message, sizeof(message), "the BGZF end-of-file marker is missing (file truncated)");
    }
    if (!failed && carry > 0) {
        failed = 1;
        snprintf(message, sizeof(message), text_input ? "the last line has no end (file truncated)"
                                                      : "the file ends inside a BAM record (truncated)");
    }
    if (!failed && writer) {
        if (writer->ref >= 0) write_held_lines(writer, names[writer->ref]);
        bgzf_close(writer);
        if (writer->failed) { failed = 1; snprintf(message, sizeof(message), "cannot write the fragment file (disk full?)"); }
    }
    if (!failed && s.keep_fragments < 0) {
        failed = 1; snprintf(message, sizeof(message), "out of memory for the fragments");
    }
    if (!failed && methylation && !s.methylation) {
        failed = 1; snprintf(message, sizeof(message), "out of memory for the molecules' methylation");
    }
    if (!failed && s.skip_bytes > 0) {
        failed = 1;
        snprintf(message, sizeof(message), "the file ends inside the BAM header (truncated)");
    }
    for (int t = 0; t < 64; t++) free(scratch[t]);
    Py_END_ALLOW_THREADS
#undef START_WINDOW
    if (failed) {
        PyErr_SetString(PyExc_ValueError, message[0] ? message : "failed to read the BAM file");
        goto done;
    }
    /* y# turns a NULL buffer into None; an empty table is an empty bytes object. */
    result = Py_BuildValue("(y#y#)", s.molecules.data ? (const char *)s.molecules.data : "",
                           (Py_ssize_t)(s.molecules.n * sizeof(int64_t)),
                           s.fragments.data ? (const char *)s.fragments.data : "", (Py_ssize_t)(s.fragments.n * sizeof(int64_t)));

done:
    for (int i = 0; i < 19; i++) if (bufs[i].held) PyBuffer_Release(&bufs[i].view);
    if (fragment_header.buf) PyBuffer_Release(&fragment_header);
    if (fragment_stream && fclose(fragment_stream) != 0 && result) {
        Py_DECREF(result); result = NULL;
        PyErr_SetString(PyExc_OSError, "cannot write the fragment file (disk full?)");
    }
    if (writer) { if (writer->compressor) p_free_compressor(writer->compressor); free(writer->lines); free(writer); }
    free(names);
    free(s.ref_done);
    free(s.molecules.data);
    free(s.fragments.data);
    if (fasta) munmap(fasta, fasta_size);
    for (int t = 0; t < 64; t++) if (decompressors[t]) p_free_decompressor(decompressors[t]);
    for (int i = 0; i < 2; i++) { free(buffer[i]); free(dest_offset[i]); }
    for (int i = 0; i < 2; i++) {
        free(tables[i].offset); free(tables[i].csize); free(tables[i].isize); free(tables[i].crc);
        free(tables[i].skip); free(tables[i].keep);
    }
    free(s.dup_keys);
    if (file != MAP_FAILED) munmap(file, file_size);
    return result;
}

static PyMethodDef kernel_methods[] = {
    {"set_libdeflate", kernel_set_libdeflate, METH_VARARGS,
     "Register libdeflate's alloc/free decompressor, deflate_decompress and crc32 addresses."},
    {"count_bam", (PyCFunction)(void (*)(void))kernel_count_bam, METH_VARARGS | METH_KEYWORDS,
     "Count the records of a BAM file (or the lines of a BGZF fragment file) into bins."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef kernel_module = {PyModuleDef_HEAD_INIT, "_bamkernel",
                                           "Compiled BAM counting kernel.", -1, kernel_methods};

PyMODINIT_FUNC PyInit__bamkernel(void) {
    memset(base_code, 4, sizeof(base_code));
    base_code['A'] = base_code['a'] = 0;
    base_code['C'] = base_code['c'] = 1;
    base_code['G'] = base_code['g'] = 2;
    base_code['T'] = base_code['t'] = 3;
    return PyModule_Create(&kernel_module);
}
