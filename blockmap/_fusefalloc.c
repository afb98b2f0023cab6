/* fallocate(2) for blockmap mount.
 *
 * pyfuse3 leaves libfuse's `fallocate` operation empty, so libfuse answers ENOSYS and the kernel
 * then refuses every fallocate on the mount with EOPNOTSUPP. This module defines
 * `fuse_session_new`: loaded into the global symbol scope before pyfuse3 (blockmap.fusefalloc does
 * that), it is the definition pyfuse3's call binds to. It copies pyfuse3's operations, adds
 * `fallocate`, and calls libfuse's own fuse_session_new with the copy. A FALLOCATE request then
 * calls the Python handler set with set_handler(handler) as
 *     handler(req, ino, mode, offset, length, fh)
 * in the thread that runs pyfuse3's loop (the GIL is held there); the handler starts the work and
 * answers later with reply_err(req, errno), 0 for success. Without a handler the request is
 * answered ENOSYS, as before.
 */
#define PY_SSIZE_T_CLEAN
#define FUSE_USE_VERSION 31
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <string.h>

typedef struct fuse_session *(*session_new_fn)(struct fuse_args *, const struct fuse_lowlevel_ops *, size_t,
                                               void *);

/* The callable FALLOCATE requests go to (a strong reference), or NULL. */
static PyObject *handler = NULL;
/* pyfuse3's operations plus fallocate; libfuse keeps its own copy, this one only has to outlive
 * the call. */
static struct fuse_lowlevel_ops ops;
/* How many sessions were created through this definition (0: pyfuse3 bound elsewhere). */
static unsigned long sessions = 0;

static void do_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
    int err = ENOSYS;
    PyGILState_STATE gil = PyGILState_Ensure();
    if (handler != NULL) {
        PyObject *res = PyObject_CallFunction(handler, "KKiLLK", (unsigned long long)(uintptr_t)req,
                                              (unsigned long long)ino, mode, (long long)offset,
                                              (long long)length, (unsigned long long)fi->fh);
        if (res != NULL) {
            Py_DECREF(res);
            err = 0; /* the handler answers */
        } else {
            PyErr_WriteUnraisable(handler);
            err = EIO;
        }
    }
    PyGILState_Release(gil);
    if (err != 0)
        fuse_reply_err(req, err);
}

static session_new_fn libfuse_session_new(void) {
    void *lib = dlopen("libfuse3.so.3", RTLD_LAZY | RTLD_NOLOAD);
    if (lib == NULL)
        return NULL;
    session_new_fn fn = (session_new_fn)dlvsym(lib, "fuse_session_new", "FUSE_3.0");
    if (fn == NULL)
        fn = (session_new_fn)dlsym(lib, "fuse_session_new");
    dlclose(lib); /* NOLOAD took a reference to a library that stays loaded (this module needs it) */
    return fn;
}

__attribute__((visibility("default"))) struct fuse_session *fuse_session_new(struct fuse_args *args,
                                                                           const struct fuse_lowlevel_ops *op,
                                                                           size_t op_size, void *userdata) {
    session_new_fn real = libfuse_session_new();
    if (real == NULL || real == fuse_session_new)
        return NULL;
    memset(&ops, 0, sizeof ops);
    memcpy(&ops, op, op_size < sizeof ops ? op_size : sizeof ops);
    if (ops.fallocate == NULL)
        ops.fallocate = do_fallocate;
    sessions++;
    return real(args, &ops, sizeof ops, userdata);
}

static PyObject *set_handler(PyObject *self, PyObject *arg) {
    (void)self;
    if (arg != Py_None && !PyCallable_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "handler must be callable or None");
        return NULL;
    }
    Py_XDECREF(handler);
    handler = NULL;
    if (arg != Py_None) {
        Py_INCREF(arg);
        handler = arg;
    }
    Py_RETURN_NONE;
}

static PyObject *reply_err(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long req;
    int err;
    if (!PyArg_ParseTuple(args, "Ki", &req, &err))
        return NULL;
    int rc = fuse_reply_err((fuse_req_t)(uintptr_t)req, err);
    return PyLong_FromLong(rc);
}

static PyObject *session_count(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromUnsignedLong(sessions);
}

static PyMethodDef methods[] = {
    {"set_handler", set_handler, METH_O, "Route FALLOCATE requests to handler(req, ino, mode, offset, length, fh)."},
    {"reply_err", reply_err, METH_VARARGS, "Answer request `req` with errno `err` (0: success)."},
    {"session_count", session_count, METH_NOARGS, "FUSE sessions created with fallocate added."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "blockmap._fusefalloc",
                                    "fallocate(2) for pyfuse3 sessions (see the C source).", -1, methods};

PyMODINIT_FUNC PyInit__fusefalloc(void) { return PyModule_Create(&module); }
