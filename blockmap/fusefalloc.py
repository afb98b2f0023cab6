"""fallocate(2) on blockmap mount, which pyfuse3 does not carry.

pyfuse3 builds libfuse's operation table itself and leaves `fallocate` out, so the kernel would
refuse every fallocate on the mount (EOPNOTSUPP). The C extension blockmap._fusefalloc defines
`fuse_session_new`; loaded into the global symbol scope before pyfuse3 (`load`, which must run
before the first `import pyfuse3` of the process), it is what pyfuse3's call binds to, and it
adds a fallocate operation to the table. `route` then sends each FALLOCATE request to
`FuseOperations.fallocate` in a trio task and answers it with the errno that returns.

Without the extension (not built: no libfuse 3 headers) or when pyfuse3 was imported first,
`load` returns None and fallocate stays EOPNOTSUPP, as before.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blockmap.fuseops import FuseOperations

log = logging.getLogger(__name__)

_EXTENSION = "blockmap._fusefalloc"


def load() -> ModuleType | None:
    """The extension, loaded so that pyfuse3 binds to its `fuse_session_new`; None where it is
    not built, or pyfuse3 was loaded first (its symbols are bound at load)."""
    if _EXTENSION in sys.modules:
        return sys.modules[_EXTENSION]
    if "pyfuse3" in sys.modules:
        log.debug("pyfuse3 was imported before %s: fallocate stays unsupported", _EXTENSION)
        return None
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_GLOBAL)
    try:
        from blockmap import _fusefalloc  # type: ignore[attr-defined]
    except ImportError as exc:
        log.debug("%s is not built (%s): fallocate stays unsupported", _EXTENSION, exc)
        return None
    finally:
        sys.setdlopenflags(flags)
    return _fusefalloc  # type: ignore[no-any-return]


def route(ext: ModuleType, ops: FuseOperations) -> Callable[[], None]:
    """Send FALLOCATE requests to `ops.fallocate` (call from the thread that will run trio);
    returns the function that stops it."""
    import trio

    async def answer(req: int, fh: int, mode: int, offset: int, length: int) -> None:
        import pyfuse3

        err = 0
        try:
            await ops.fallocate(fh, mode, offset, length)
        except pyfuse3.FUSEError as exc:
            err = exc.errno
        except trio.Cancelled:
            ext.reply_err(req, errno.EINTR)
            raise
        except Exception:  # noqa: BLE001 - a bug: EIO and its traceback, not the end of the mount
            log.exception("fallocate failed unexpectedly")
            err = errno.EIO
        ext.reply_err(req, err)

    def on_request(req: int, inode: int, mode: int, offset: int, length: int, fh: int) -> None:
        trio.lowlevel.spawn_system_task(answer, req, fh, mode, offset, length, name="fallocate")

    ext.set_handler(on_request)
    return lambda: ext.set_handler(None)
