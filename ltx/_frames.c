/* ltx._frames: decode a run of LTX page frames (10-byte prefix + raw LZ4 block) in one call.
 *
 * Why: the pure-Python loop in ltx/decoder.py spends about a microsecond of interpreter time per
 * page around each LZ4 call and hands the GIL over once per page. This loop decodes a whole batch
 * with the GIL released. It decides nothing the Python loop does not: any frame off the common
 * path (end marker, lock page, a page number out of order, a bad flag or size, a block that does
 * not decode to exactly one page) stops the run, and the Python loop handles that frame as before.
 *
 * Output layout, per decoded frame, at slot k of `out` (stride = 10 + page_size): the frame's 10
 * prefix bytes, then the decompressed page. That is exactly the byte stream the LTX file checksum
 * covers, so the caller checksums the batch in one call. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define FRAME_PREFIX_SIZE 10
#define PAGE_FLAG_SIZE 0x0001
#define MIN_MATCH 4
/* LZ4's end-of-block limits: the last 5 bytes are literals; the last match starts 12 bytes or more
 * before the end; a 4-bit length of 15 continues in extension bytes. */
#define LASTLITERALS 5
#define MFLIMIT 12
#define RUN_MASK 15
/* The largest page size and page number (SQLite's) these functions take. */
#define MAX_PAGE_SIZE 65536
#define MAX_PGNO 4294967294ULL
/* iovecs per pwritev (under Linux's IOV_MAX of 1024) */
#define IOV_BATCH 512

enum { STOP_FULL = 0, STOP_NEED_INPUT = 1, STOP_SLOW_FRAME = 2, STOP_BAD_BLOCK = 3 };

/* Read a length's extension bytes (255 continues it). Returns 0, or -1 past the input. (lz4's own
 * limits on where these bytes may lie follow from the end-of-block rules below.) */
static int
read_length(const uint8_t **ipp, const uint8_t *iend, size_t *len)
{
    const uint8_t *ip = *ipp;
    unsigned b;
    do {
        if (ip >= iend)
            return -1;
        b = *ip++;
        *len += b;
    } while (b == 255);
    *ipp = ip;
    return 0;
}

/* Decode one raw LZ4 block [ip, iend) into exactly [op0, oend). Returns 0, or -1 for a block that
 * is malformed, reads outside its input, refers before the output, does not fill it exactly, or
 * breaks one of LZ4's end-of-block rules (a sequence whose literals come within MFLIMIT bytes of
 * the output's end, or within 8 bytes of the input's, must be the last; a match may not reach
 * into the last LASTLITERALS bytes). The rules are applied at their strictest, so that this
 * decoder never accepts a block lz4's decoder (the Python loop's) refuses: what it refuses, the
 * Python loop decodes with lz4 and judges as before. Offset 0, which lz4 accepts, is refused. */
static int
lz4_decode_block(const uint8_t *ip, const uint8_t *iend, uint8_t *op0, uint8_t *oend)
{
    uint8_t *op = op0;
    for (;;) {
        if (ip >= iend)
            return -1;
        unsigned token = *ip++;
        size_t lit = token >> 4;
        if (lit == RUN_MASK && read_length(&ip, iend, &lit) < 0)
            return -1;
        if ((size_t)(iend - ip) < lit || (size_t)(oend - op) < lit)
            return -1;
        if ((size_t)(oend - op) - lit < MFLIMIT || (size_t)(iend - ip) - lit < 2 + 1 + LASTLITERALS) {
            /* the last sequence: literals only, ending input and output together */
            if ((size_t)(iend - ip) != lit || (size_t)(oend - op) != lit)
                return -1;
            memcpy(op, ip, lit);
            return 0;
        }
        memcpy(op, ip, lit);
        op += lit;
        ip += lit;
        size_t offset = (size_t)ip[0] | ((size_t)ip[1] << 8); /* 8 bytes remain: see above */
        ip += 2;
        if (offset == 0 || offset > (size_t)(op - op0))
            return -1;
        size_t mlen = token & 15;
        if (mlen == RUN_MASK && read_length(&ip, iend, &mlen) < 0)
            return -1;
        mlen += MIN_MATCH;
        if ((size_t)(oend - op) < mlen || (size_t)(oend - op) - mlen < LASTLITERALS)
            return -1;
        const uint8_t *match = op - offset;
        if (offset >= mlen) {
            memcpy(op, match, mlen);
        } else if (offset == 1) {
            memset(op, match[0], mlen);
        } else {
            /* Overlapping: the pattern [match, op) repeats; copy it in doubling spans, each source
             * range lying wholly before its destination. */
            size_t done = 0;
            while (done < mlen) {
                size_t span = (size_t)(op + done - match);
                size_t n = mlen - done < span ? mlen - done : span;
                memcpy(op + done, match, n);
                done += n;
            }
        }
        op += mlen;
    }
}

static uint32_t
be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

PyDoc_STRVAR(decode_frames_doc,
"decode_frames(src, pos, page_size, first, slots, out, pgnos, sizes, prev, hi, snapshot)\n"
"  -> (pos, count, stop)\n\n"
"Decode frames of `src` from `pos` while each is on the common path: page number above `prev`\n"
"(and `prev + 1` in a snapshot) and below `hi`, the size flag, a block of at most the LZ4 bound\n"
"that decodes to exactly `page_size` bytes. Decoded frames fill slots `first`, `first + 1`, ...\n"
"below `slots`: slot k of `out` (at k * (10 + page_size)) gets the frame's prefix then its page,\n"
"slot k of the native u64 buffers `pgnos` and `sizes` its page number and frame size. `count`\n"
"is how many slots were filled. `stop` says why it ended: 0 every slot is full, 1 the next frame\n"
"is not wholly in `src`, 2 the next frame is off the common path, 3 its block does not decode to\n"
"exactly one page.");

static PyObject *
decode_frames(PyObject *self, PyObject *args)
{
    Py_buffer src, out, pgnos, sizes;
    Py_ssize_t pos, first, slots;
    unsigned int page_size;
    unsigned long long prev, hi;
    int snapshot;
    if (!PyArg_ParseTuple(args, "y*nInnw*w*w*KKp", &src, &pos, &page_size, &first, &slots, &out, &pgnos,
                          &sizes, &prev, &hi, &snapshot))
        return NULL;
    PyObject *result = NULL;
    const size_t stride = FRAME_PREFIX_SIZE + (size_t)page_size;
    if (page_size == 0 || page_size > MAX_PAGE_SIZE || pos < 0 || pos > src.len || first < 0 || slots < first
            || (size_t)out.len / stride < (size_t)slots
            || (size_t)pgnos.len / 8 < (size_t)slots || (size_t)sizes.len / 8 < (size_t)slots) {
        PyErr_SetString(PyExc_ValueError, "decode_frames: buffers too small or arguments out of range");
        goto done;
    }
    const uint8_t *base = (const uint8_t *)src.buf;
    const size_t len = (size_t)src.len;
    const size_t bound = (size_t)page_size + page_size / 255 + 16;
    uint8_t *dst = (uint8_t *)out.buf;
    uint8_t *pg = (uint8_t *)pgnos.buf;
    uint8_t *sz = (uint8_t *)sizes.buf;
    size_t at = (size_t)pos;
    Py_ssize_t k = first;
    int stop = STOP_FULL;
    Py_BEGIN_ALLOW_THREADS
    while (k < slots) {
        if (len - at < FRAME_PREFIX_SIZE) {
            stop = STOP_NEED_INPUT;
            break;
        }
        const uint8_t *p = base + at;
        uint64_t pgno = be32(p);
        unsigned flags = ((unsigned)p[4] << 8) | p[5];
        size_t size = be32(p + 6);
        if (pgno <= prev || pgno >= hi || flags != PAGE_FLAG_SIZE || size > bound
                || (snapshot && pgno != prev + 1)) {
            stop = STOP_SLOW_FRAME;
            break;
        }
        if (len - at - FRAME_PREFIX_SIZE < size) {
            stop = STOP_NEED_INPUT;
            break;
        }
        uint8_t *slot = dst + (size_t)k * stride;
        if (lz4_decode_block(p + FRAME_PREFIX_SIZE, p + FRAME_PREFIX_SIZE + size, slot + FRAME_PREFIX_SIZE,
                             slot + stride) < 0) {
            stop = STOP_BAD_BLOCK;
            break;
        }
        memcpy(slot, p, FRAME_PREFIX_SIZE);
        uint64_t frame_size = FRAME_PREFIX_SIZE + size;
        memcpy(pg + (size_t)k * 8, &pgno, 8); /* native order, any alignment */
        memcpy(sz + (size_t)k * 8, &frame_size, 8);
        prev = pgno;
        at += FRAME_PREFIX_SIZE + size;
        k++;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nni", (Py_ssize_t)at, k - first, stop);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    PyBuffer_Release(&pgnos);
    PyBuffer_Release(&sizes);
    return result;
}

PyDoc_STRVAR(decode_block_doc,
"decode_block(block, size) -> bytes\n\n"
"Decode one raw LZ4 block that must give exactly `size` bytes (ValueError otherwise).");

static PyObject *
decode_block(PyObject *self, PyObject *args)
{
    Py_buffer src;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*n", &src, &size))
        return NULL;
    PyObject *page = NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "decode_block: negative size");
        goto done;
    }
    page = PyBytes_FromStringAndSize(NULL, size);
    if (page == NULL)
        goto done;
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(page);
    const uint8_t *ip = (const uint8_t *)src.buf;
    if (lz4_decode_block(ip, ip + src.len, dst, dst + size) < 0) {
        Py_CLEAR(page);
        PyErr_SetString(PyExc_ValueError, "decode_block: not an LZ4 block of exactly that size");
    }
done:
    PyBuffer_Release(&src);
    return page;
}

PyDoc_STRVAR(page_list_doc,
"page_list(out, count, page_size) -> list[bytes]\n\n"
"The pages of the first `count` slots of `out` (as decode_frames fills it), each as bytes.");

static PyObject *
page_list(PyObject *self, PyObject *args)
{
    Py_buffer out;
    Py_ssize_t count;
    unsigned int page_size;
    if (!PyArg_ParseTuple(args, "y*nI", &out, &count, &page_size))
        return NULL;
    PyObject *list = NULL;
    const size_t stride = FRAME_PREFIX_SIZE + (size_t)page_size;
    if (page_size == 0 || page_size > MAX_PAGE_SIZE || count < 0 || (size_t)out.len / stride < (size_t)count) {
        PyErr_SetString(PyExc_ValueError, "page_list: buffer too small or arguments out of range");
        goto done;
    }
    list = PyList_New(count);
    if (list == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < count; k++) {
        const char *page = (const char *)out.buf + (size_t)k * stride + FRAME_PREFIX_SIZE;
        PyObject *item = PyBytes_FromStringAndSize(page, page_size);
        if (item == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, k, item);
    }
done:
    PyBuffer_Release(&out);
    return list;
}

PyDoc_STRVAR(write_slots_doc,
"write_slots(fd, out, count, page_size, stride, pgnos)\n\n"
"Write the pages of the first `count` slots of `out` (slot k: `stride` bytes at k * stride, the\n"
"page in its last `page_size`) to `fd` at (pgno - 1) * page_size, pgno from the native u64\n"
"buffer `pgnos`: one pwritev per run of consecutive page numbers, the GIL released, short\n"
"writes continued. OSError on a failed write.");

static PyObject *
write_slots(PyObject *self, PyObject *args)
{
    int fd;
    Py_buffer out, pgnos;
    Py_ssize_t count, stride;
    unsigned int page_size;
    if (!PyArg_ParseTuple(args, "iy*nIny*", &fd, &out, &count, &page_size, &stride, &pgnos))
        return NULL;
    PyObject *result = NULL;
    if (page_size == 0 || page_size > MAX_PAGE_SIZE || count < 0 || stride < (Py_ssize_t)page_size
            || (size_t)out.len / (size_t)stride < (size_t)count || (size_t)pgnos.len / 8 < (size_t)count) {
        PyErr_SetString(PyExc_ValueError, "write_slots: buffers too small or arguments out of range");
        goto done;
    }
    const uint8_t *base = (const uint8_t *)out.buf + (stride - page_size);
    const uint8_t *pg = (const uint8_t *)pgnos.buf;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < count; k++) { /* every page number checked before anything is written */
        uint64_t pgno;
        memcpy(&pgno, pg + (size_t)k * 8, 8);
        if (pgno == 0 || pgno > MAX_PGNO) {
            err = -1;
            break;
        }
    }
    struct iovec iov[IOV_BATCH];
    Py_ssize_t k = 0;
    while (k < count && !err) {
        uint64_t first;
        memcpy(&first, pg + (size_t)k * 8, 8);
        int n = 0;
        while (k + n < count && n < IOV_BATCH) {
            uint64_t pgno;
            memcpy(&pgno, pg + (size_t)(k + n) * 8, 8);
            if (pgno != first + (uint64_t)n)
                break;
            iov[n].iov_base = (void *)(base + (size_t)(k + n) * (size_t)stride);
            iov[n].iov_len = page_size;
            n++;
        }
        off_t offset = (off_t)((first - 1) * (uint64_t)page_size);
        struct iovec *v = iov;
        int left = n;
        while (left > 0) {
            ssize_t w = pwritev(fd, v, left, offset);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (w == 0) {
                err = EIO;
                break;
            }
            offset += w;
            while (left > 0 && (size_t)w >= v->iov_len) {
                w -= (ssize_t)v->iov_len;
                v++;
                left--;
            }
            if (left > 0) {
                v->iov_base = (uint8_t *)v->iov_base + w;
                v->iov_len -= (size_t)w;
            }
        }
        k += n;
    }
    Py_END_ALLOW_THREADS
    if (err == -1) {
        PyErr_SetString(PyExc_ValueError, "write_slots: page number 0 or out of range");
    } else if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        result = Py_NewRef(Py_None);
    }
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&pgnos);
    return result;
}

PyDoc_STRVAR(scratch_doc,
"scratch(size) -> bytearray\n\n"
"A bytearray of `size` bytes left uninitialised (bytearray(size) zero-fills it), for decode_frames\n"
"to fill: only slots it filled may be read.");

static PyObject *
scratch(PyObject *self, PyObject *args)
{
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "n", &size))
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "scratch: negative size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, size);
}

PyDoc_STRVAR(index_blocks_doc,
"index_blocks(body, entries) -> (starts, first_pgnos, first_offsets, tail) or None\n\n"
"Where each block of `entries` page index entries (3 varints each) starts in `body`, as\n"
"vfs.lazyindex's Python loop finds them: a varint is any run of bytes >= 0x80 and one byte below;\n"
"blocks are counted while a whole one follows; `tail` is where the first incomplete block starts.\n"
"The starts, and each block's first page number and offset, come as native uint64 arrays' bytes.\n"
"None when a block's first page number or offset is longer than 9 bytes (the Python loop then\n"
"decides, and names the error).");

/* A varint at p (< end): its value and length, or length 0 when longer than 9 bytes or cut short. */
static size_t
varint9(const uint8_t *p, const uint8_t *end, uint64_t *value)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 9 && p + i < end; i++) {
        v |= (uint64_t)(p[i] & 0x7F) << (7 * i);
        if (p[i] < 0x80) {
            *value = v;
            return i + 1;
        }
    }
    return 0;
}

static PyObject *
index_blocks(PyObject *self, PyObject *args)
{
    Py_buffer body;
    Py_ssize_t entries;
    if (!PyArg_ParseTuple(args, "y*n", &body, &entries))
        return NULL;
    if (entries <= 0) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_ValueError, "index_blocks: entries must be positive");
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)body.buf;
    const uint8_t *end = base + body.len;
    size_t cap = 64, n = 0;
    uint64_t *starts = PyMem_RawMalloc(cap * sizeof(uint64_t));
    uint64_t *pgnos = PyMem_RawMalloc(cap * sizeof(uint64_t));
    uint64_t *offsets = PyMem_RawMalloc(cap * sizeof(uint64_t));
    PyObject *result = NULL;
    int fallback = 0;
    if (starts == NULL || pgnos == NULL || offsets == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *p = base;
    size_t want = 3 * (size_t)entries;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        const uint8_t *q = p;
        size_t seen = 0;
        while (seen < want && q < end) {
            if (*q++ < 0x80)
                seen++;
        }
        if (seen < want)
            break;
        uint64_t pgno, offset;
        size_t a = varint9(p, end, &pgno);
        size_t b = a ? varint9(p + a, end, &offset) : 0;
        if (!a || !b) {
            fallback = 1;
            break;
        }
        if (n == cap) {
            size_t bigger = cap * 2;
            uint64_t *s2 = PyMem_RawRealloc(starts, bigger * sizeof(uint64_t));
            if (s2) starts = s2;
            uint64_t *p2 = s2 ? PyMem_RawRealloc(pgnos, bigger * sizeof(uint64_t)) : NULL;
            if (p2) pgnos = p2;
            uint64_t *o2 = p2 ? PyMem_RawRealloc(offsets, bigger * sizeof(uint64_t)) : NULL;
            if (o2) offsets = o2;
            if (!o2) {
                fallback = 2;
                break;
            }
            cap = bigger;
        }
        starts[n] = (uint64_t)(p - base);
        pgnos[n] = pgno;
        offsets[n] = offset;
        n++;
        p = q;
    }
    Py_END_ALLOW_THREADS
    if (fallback == 2) {
        PyErr_NoMemory();
        goto done;
    }
    if (fallback) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue("(y#y#y#n)", (const char *)starts, (Py_ssize_t)(n * sizeof(uint64_t)),
                           (const char *)pgnos, (Py_ssize_t)(n * sizeof(uint64_t)),
                           (const char *)offsets, (Py_ssize_t)(n * sizeof(uint64_t)),
                           (Py_ssize_t)(p - base));
done:
    PyMem_RawFree(starts);
    PyMem_RawFree(pgnos);
    PyMem_RawFree(offsets);
    PyBuffer_Release(&body);
    return result;
}

static PyMethodDef frames_methods[] = {
    {"decode_frames", decode_frames, METH_VARARGS, decode_frames_doc},
    {"decode_block", decode_block, METH_VARARGS, decode_block_doc},
    {"page_list", page_list, METH_VARARGS, page_list_doc},
    {"write_slots", write_slots, METH_VARARGS, write_slots_doc},
    {"scratch", scratch, METH_VARARGS, scratch_doc},
    {"index_blocks", index_blocks, METH_VARARGS, index_blocks_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef frames_module = {
    PyModuleDef_HEAD_INIT, "ltx._frames",
    "Decode runs of LTX page frames in one call (the pure-Python loop in ltx.decoder is the reference).",
    -1, frames_methods,
};

PyMODINIT_FUNC
PyInit__frames(void)
{
    PyObject *m = PyModule_Create(&frames_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "STOP_FULL", STOP_FULL) < 0
            || PyModule_AddIntConstant(m, "STOP_NEED_INPUT", STOP_NEED_INPUT) < 0
            || PyModule_AddIntConstant(m, "STOP_SLOW_FRAME", STOP_SLOW_FRAME) < 0
            || PyModule_AddIntConstant(m, "STOP_BAD_BLOCK", STOP_BAD_BLOCK) < 0
            || PyModule_AddIntConstant(m, "FRAME_PREFIX_SIZE", FRAME_PREFIX_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
