"""`blockmap`: the command line for blockmap volumes.

Every command takes `--meta URL` (or BLOCKMAP_META): a replica (`file:///dir`, `s3://…`; the
metadata is `blockmap.db` in ltxvfs) or a local SQLite file (`sqlite3:///path/meta.db`). The data
URL and the volume name come from the volume's settings. On a replica, writing commands use
group commit (CLI_SYNC) and ship everything before they exit; reading commands take `--txid` /
`--at` to read the volume as it was. Errors are one line on stderr and a non-zero exit, never a traceback:
`describe_error` maps every known exception to that line, in one place, and `BlockmapGroup.main`
applies it to every command (through `main()` and through typer's CliRunner alike).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import posixpath
import re
import signal
import stat as statmod
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, BinaryIO

import apsw
import typer
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from blockmap.clitree import CopyStats, get_file, get_tree, put_file, put_stream, put_tree, walk
from blockmap.engine import DirEntry
from blockmap.errors import BlockmapError, InvalidMetaURLError, fs_error
from blockmap.meta import as_int, is_replica_url
from blockmap.node import (
    TYPE_BLOCKDEV,
    TYPE_CHARDEV,
    TYPE_DIRECTORY,
    TYPE_FIFO,
    TYPE_FILE,
    TYPE_SOCKET,
    TYPE_SYMLINK,
    Attr,
)
from blockmap.paths import split_path
from blockmap.settings import DEFAULT_BLOCK_SIZE
from blockmap.volume import Volume
from ltx.clifmt import (
    EXIT_INTERRUPTED,
    InterruptGuard,
    human_size,
    plural,
    root_cause,
    start_logging,
    store_error_line,
)
from ltx.cliopts import log_level_flag, version_flag
from ltx.names import parse_txid
from ltx.plan import RestorePlanError
from ltx.store import InvalidURLError, StoreError, redact_url
from vfs.errors import ReplicaOpenError

PROG = "blockmap"
#: Environment variable that stands in for `--meta`.
META_ENV = "BLOCKMAP_META"
#: Group commit of writing commands on a replica (ltxvfs `sync=`); the command flushes before it exits.
CLI_SYNC = "interval:1s"
#: Set to 1 to get a traceback for an unexpected error (for developers).
DEBUG_ENV = "BLOCKMAP_DEBUG"
#: Exit codes: a failure, a usage error (click's), an interrupt.
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The name standing for stdin (put) or stdout (get).
STDIO = "-"
#: Settings fields shown as "removed" by `status` (JuiceFS's `status` hides the secret the same way).
SECRET_SETTINGS = ("SecretKey", "SessionToken", "EncryptKey")

TYPE_NAMES = {
    TYPE_FILE: "regular file",
    TYPE_DIRECTORY: "directory",
    TYPE_SYMLINK: "symbolic link",
    TYPE_FIFO: "fifo",
    TYPE_BLOCKDEV: "block special file",
    TYPE_CHARDEV: "character special file",
    TYPE_SOCKET: "socket",
}


class CLIError(Exception):
    """A condition the CLI reports as is (exit 1)."""


class UsageError(CLIError):
    """A bad option value or combination (exit 2, as the parser's own usage errors)."""


# --- output -------------------------------------------------------------------------------------


def _encode(text: str) -> bytes:
    """Text as bytes for a terminal: names that are not UTF-8 go out as the raw bytes they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


def emit(line: str = "") -> None:
    """One line on stdout (bytes, so any entry name survives)."""
    _stdout().write(_encode(line) + b"\n")


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    """Write the one error line and return the exit code."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    err = sys.stderr
    line = _encode(f"{PROG}: {' '.join(message.split())}") + b"\n"
    buffer = getattr(err, "buffer", None)
    if buffer is not None:
        buffer.write(line)
        buffer.flush()
    else:  # a text-only stream
        err.write(line.decode("utf-8", "replace"))
        err.flush()
    return code


def show_url(url: str) -> str:
    """A URL for messages: without credentials, otherwise exactly as given."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact_url(url)
    if "@" not in parts.netloc and not parts.query:
        return url
    return redact_url(url)


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="microseconds")


# --- errors -------------------------------------------------------------------------------------

_context: dict[str, object] = {"meta": "", "verbose": False, "guard": None}


def resolve_meta(meta: str) -> str:
    """`--meta` as given, except a plain path naming a directory (relative ones too), which is the
    replica in it (as `ltxctl` takes it); any other plain path stays a local SQLite file."""
    if "://" not in meta and os.path.isdir(meta):
        return "file://" + urllib.parse.quote(os.path.abspath(meta))
    return meta


def note_meta(meta_url: str) -> None:
    """The metadata URL the running command works on (named in its error line)."""
    _context["meta"] = meta_url


def describe_error(exc: BaseException, meta_url: str = "") -> str:
    """The one line an exception becomes on stderr."""
    if isinstance(exc, OSError):
        name = os.fsdecode(exc.filename) if exc.filename is not None else None
        name2 = os.fsdecode(exc.filename2) if exc.filename2 is not None else None
        reason = exc.strerror or str(exc)
        if name is not None and name2 is not None:
            return f"{name} -> {name2}: {reason}"
        return f"{name}: {reason}" if name is not None else reason
    if isinstance(exc, InvalidMetaURLError):
        return f"{show_url(exc.what)}: {exc.reason}"
    if isinstance(exc, InvalidURLError):
        return f"{show_url(exc.url)}: {exc.reason}"
    if isinstance(exc, StoreError):
        return store_error_line(exc)
    if isinstance(exc, BlockmapError | CLIError | RestorePlanError):
        return str(exc)
    if isinstance(exc, apsw.Error):
        # Name what the user typed once: the replica's own error, not the layers it crossed.
        inner = root_cause(exc, (RestorePlanError, StoreError, InvalidURLError))
        if inner is not None:
            return describe_error(inner, meta_url)
        if isinstance(exc, ReplicaOpenError):
            return f"{exc.url}: {exc.reason.removeprefix(exc.url + ': ')}"
        where = f"metadata {show_url(meta_url)}" if meta_url else "metadata"
        return f"{where}: {exc}"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


def _usage_message(exc: typer.TyperException) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(exc, "exit_code", EXIT_FAILURE) == EXIT_USAGE:
        return f"{message} (see '{ctx.command_path} --help')"
    return message


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run a command; every failure becomes one line on stderr and an exit code."""
    try:
        rv = fn()
    except NoArgsIsHelpError as exc:  # `blockmap` alone: the help, as it is, and a usage exit
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        return EXIT_USAGE
    except typer.TyperException as exc:  # usage errors (exit code 2) and the like
        return fail(_usage_message(exc), getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        guard = _context.get("guard")
        if isinstance(guard, InterruptGuard):
            guard.report()
            return EXIT_INTERRUPTED
        return fail("interrupted", EXIT_INTERRUPTED)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes a line
        if _interrupted():  # an error raised while unwinding from Ctrl-C
            return EXIT_INTERRUPTED
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        code = fail(describe_error(exc, str(_context["meta"])), EXIT_USAGE if isinstance(exc, UsageError)
                    else EXIT_FAILURE)
        if _context.get("verbose"):
            _write_causes(exc)
        return code
    if _interrupted():  # typer turned the KeyboardInterrupt into a silent 130
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) else 0


def handle_own_signals() -> None:
    """For a command that handles SIGINT itself (the mount ships what is pending, then unmounts):
    Python's own handler again, and no forced exit after the grace period."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _context["guard"] = None


def _interrupted() -> bool:
    """Whether Ctrl-C arrived under `main` (then 'interrupted' is written, once)."""
    guard = _context.get("guard")
    if isinstance(guard, InterruptGuard) and guard.fired:
        guard.report()
        return True
    return False


def _write_causes(exc: BaseException) -> None:
    """With -v: the chain of causes under the error line, one line each."""
    seen = {id(exc)}
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sys.stderr.write(f"  caused by: {type(current).__name__}: {' '.join(str(current).split())}\n")
        current = current.__cause__ or current.__context__


class BlockmapGroup(TyperGroup):
    """The command group; its `main` turns every error into one line (also under CliRunner)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = run_guarded(
            lambda: super(BlockmapGroup, self).main(
                args=args, prog_name=prog_name or PROG, complete_var=complete_var, standalone_mode=False, **extra
            )
        )
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name=PROG,
    cls=BlockmapGroup,
    help="Format, browse, copy into and out of, and check blockmap volumes (JuiceFS 1.4 metadata in SQLite, "
    "bytes as block objects in file:// or s3:// storage).",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)


@app.callback()
def _global_options(
    show_version: Annotated[bool, version_flag(PROG, emit)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log what happens (debug level) and show an "
                                                                 "error's causes (BLOCKMAP_DEBUG=1 also shows "
                                                                 "a traceback).")] = False,
    log_level: Annotated[str | None, log_level_flag()] = None,
) -> None:
    """Options before the command: `blockmap -v ls …`."""
    try:
        start_logging(verbose, log_level)
    except ValueError as exc:
        raise UsageError(f"--log-level: {exc}") from exc
    _context["verbose"] = verbose


# --- helpers ------------------------------------------------------------------------------------


def command_sync(meta: str) -> str | None:
    """The `sync=` of a writing command: group commit on a replica (LTXVFS_SYNC overrides it).
    The command ships everything before it exits (the volume's close flushes), so an exit status
    of 0 still means every change is in the store; the groups only save PUTs."""
    if not is_replica_url(meta):
        return None
    from vfs.options import ENV_SYNC

    return os.environ.get(ENV_SYNC) or CLI_SYNC


@contextlib.contextmanager
def open_volume(meta: str, *, read_only: bool = False, txid: str | None = None, at: str | None = None
                ) -> Iterator[Volume]:  # fmt: skip
    """The volume at `meta` (as of `txid` / `at` when given), closed when the command ends."""
    meta = resolve_meta(meta)
    _context["meta"] = meta
    past = parse_txid_option(txid) if txid else 0
    when = parse_at_option(at) if at is not None else None
    vol = Volume.open(meta, read_only=read_only, txid=past, timestamp=when,
                      sync=None if read_only or past or when else command_sync(meta))
    try:
        yield vol
    finally:
        vol.close()


def parse_at_option(text: str) -> datetime:
    """`--at`: RFC 3339 or a relative time such as '5 minutes ago' (ltx.timefmt)."""
    from ltx import timefmt

    try:
        return timefmt.parse_time(text)
    except timefmt.TimeFormatError as exc:
        raise UsageError(f"--at {text!r}: {exc.reason}") from exc


def parse_txid_option(text: str) -> int:
    try:
        txid = parse_txid(text)
    except ValueError as exc:
        raise UsageError(f"--txid {text!r}: expected a hexadecimal TXID (as `ltxctl ls` prints it)") from exc
    if txid <= 0:
        raise UsageError(f"--txid {text!r}: TXIDs start at 1")
    return txid


def vpath(path: str) -> str:
    """A volume path as shown in messages: rooted at '/'."""
    return path if path.startswith("/") else "/" + path


def _basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def into_directory(vol: Volume, src_name: str | None, dst: str, no_target_dir: bool) -> str:
    """`dst`, or `dst/<src_name>` when `dst` is an existing directory (as mv, ln and cp treat it)."""
    dst = vpath(dst)
    if no_target_dir:
        return dst
    try:
        st = vol.stat(dst)
    except (FileNotFoundError, NotADirectoryError):
        return dst
    if not st.is_dir():
        return dst
    if not src_name:
        raise fs_error(errno.EISDIR, dst)
    return posixpath.join(dst, src_name)


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """Name the volume file in a block or store error met while reading it."""
    try:
        yield
    except (BlockmapError, StoreError) as exc:
        raise CLIError(f"{path}: {exc}") from exc


def is_root(path: str) -> bool:
    return not split_path(path)


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1 << 10, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_block_size(text: str) -> int:
    """A block size as `juicefs format --block-size` takes it: `4M`, `64K`, `1MiB`; a plain number is KiB."""
    m = _SIZE.match(text)
    if m is None:
        raise UsageError(f"invalid block size {text!r} (use e.g. 64K, 1M, 4M; a plain number is KiB)")
    number, unit, byte_suffix = int(m.group(1)), m.group(2).lower(), m.group(3)
    if not unit and byte_suffix and byte_suffix.lower() == "b":
        return number  # "65536B": bytes
    return number * _UNITS[unit]


def attr_record(path: str, attr: Attr, target: str | None, xattrs: list[str]) -> dict[str, Any]:
    """`stat --json`: the attributes under stable names."""
    record: dict[str, Any] = {
        "path": path,
        "inode": attr.st_ino,
        "type": TYPE_NAMES.get(attr.type, str(attr.type)),
        "mode": f"{statmod.S_IMODE(attr.st_mode):04o}",
        "permissions": statmod.filemode(attr.st_mode),
        "nlink": attr.st_nlink,
        "uid": attr.st_uid,
        "gid": attr.st_gid,
        "size": attr.st_size,
        "atime_ns": attr.st_atime_ns,
        "mtime_ns": attr.st_mtime_ns,
        "ctime_ns": attr.st_ctime_ns,
        "parent": attr.parent,
        "flags": attr.flags,
        "xattrs": xattrs,
    }
    if target is not None:
        record["target"] = target
    return record


def long_line(name: str, attr: Attr, target: str | None) -> str:
    """One `ls -l` line: mode, links, owner, group, size, mtime, name (-> target)."""
    when = datetime.fromtimestamp(attr.st_mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    line = (f"{statmod.filemode(attr.st_mode)} {attr.st_nlink:>3} {attr.st_uid:>5} {attr.st_gid:>5} "
            f"{attr.st_size:>12} {when} {name}")  # fmt: skip
    return f"{line} -> {target}" if target is not None else line


# --- commands -----------------------------------------------------------------------------------

MetaOpt = Annotated[
    str,
    typer.Option("--meta", envvar=META_ENV, show_envvar=True,
                 help="Metadata URL of the volume: a replica, file:///dir or s3://bucket/path?endpoint=… (the "
                      "database blockmap.db in ltxvfs), or a local SQLite file, sqlite3:///path/meta.db."),
]  # fmt: skip
TxidOpt = Annotated[
    str | None,
    typer.Option("--txid", help="Read the volume as of this TXID (hex; the metadata must be a replica)."),
]
AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Read the volume as of the last commit before this time (RFC 3339 or "
                              "'5 minutes ago'; the metadata must be a replica)."),
]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NoTargetOpt = Annotated[
    bool, typer.Option("--no-target-directory", "-T", help="Treat DST as a name even if it is a directory.")
]
PathArg = Annotated[str, typer.Argument(help="Path inside the volume.")]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bars for files of 8 MiB and more (default: on a "
                                                  "terminal)."),
]


@app.command("format")
def format_cmd(
    name: Annotated[str, typer.Argument(help="Volume name (a-z, 0-9, '-'; 3 to 63 characters).")],
    meta: MetaOpt,
    data: Annotated[
        str,
        typer.Option("--data", help="Data URL: file:///dir or s3://bucket?endpoint=… (the bucket only: blocks go "
                                    "to <bucket>/<NAME>/, where the juicefs binary looks)."),
    ],
    block_size: Annotated[
        str, typer.Option("--block-size", help="Block size: 64K to 16M (a plain number is KiB).")
    ] = f"{DEFAULT_BLOCK_SIZE >> 20}M",
    trash_days: Annotated[
        int, typer.Option("--trash-days", min=0, help="Keep removed files this many days (0: no trash).")
    ] = 0,
    hash_prefix: Annotated[bool, typer.Option("--hash-prefix", help="Spread block keys over 256 prefixes.")] = False,
) -> None:
    """Create a volume: JuiceFS 1.4 schema and settings in the metadata, <NAME>/juicefs_uuid in the data store."""
    size = parse_block_size(block_size)
    meta = resolve_meta(meta)
    _context["meta"] = meta
    if data and "://" not in data:  # a local directory, relative ones too: stored as an absolute file URL
        data = "file://" + urllib.parse.quote(os.path.abspath(data))
    with Volume.format(meta, data, name, block_size=size, trash_days=trash_days, hash_prefix=hash_prefix) as vol:
        s = vol.settings
        emit(f"formatted volume {s.name} (UUID {s.uuid}): block size {human_size(s.block_size)}, "
             f"trash {s.trash_days} days, data {show_url(vol.data_url)}")  # fmt: skip


@app.command("ls")
def ls_cmd(
    meta: MetaOpt,
    path: Annotated[str, typer.Argument(help="Directory (or file) inside the volume.")] = "/",
    long: Annotated[bool, typer.Option("-l", "--long", help="Mode, links, owner, size and mtime too.")] = False,
    recursive: Annotated[bool, typer.Option("-R", "--recursive", help="List subdirectories too, each under a "
                                                                      "'DIR:' line, as ls -R does.")] = False,
    as_json: JsonOpt = False,
    txid: TxidOpt = None,
    at: AtOpt = None,
) -> None:
    """List a directory, streaming its entries in name order."""
    path = vpath(path)
    with open_volume(meta, read_only=True, txid=txid, at=at) as vol:
        try:
            is_dir = vol.stat(path).is_dir()
        except FileNotFoundError:  # a dangling symlink is still listed
            is_dir = False
        if as_json:
            emit(json.dumps(_ls_records(vol, path, is_dir, recursive), indent=2))
            return
        if not is_dir:
            attr = vol.lstat(path)
            target = vol.readlink(path) if attr.is_symlink() else None
            emit(long_line(path, attr, target) if long else path)
            return
        if not recursive:
            for entry in vol.readdir(path, with_attrs=long):
                _emit_entry(vol, path, entry, long)
            return
        for n, (directory, entries) in enumerate(walk(vol, path, with_attrs=long)):
            emit(("\n" if n else "") + f"{directory}:")
            for entry in entries:
                _emit_entry(vol, directory, entry, long)


def _ls_records(vol: Volume, path: str, is_dir: bool, recursive: bool) -> list[dict[str, Any]]:
    """`ls --json`: one record per entry (every entry below `path` with -R), each with its path."""
    def record(child: str, attr: Attr) -> dict[str, Any]:
        out = attr_record(child, attr, vol.readlink(child) if attr.is_symlink() else None, [])
        del out["xattrs"]
        return {"name": posixpath.basename(child) or "/", **out}

    if not is_dir:
        return [record(path, vol.lstat(path))]
    listing = walk(vol, path, with_attrs=True) if recursive else [(path, list(vol.readdir(path, with_attrs=True)))]
    out = []
    for directory, entries in listing:
        for entry in entries:
            child = posixpath.join(directory, entry.name)
            out.append(record(child, entry.attr if entry.attr is not None else vol.lstat(child)))
    return out


def _emit_entry(vol: Volume, directory: str, entry: DirEntry, long: bool) -> None:
    if not long:
        emit(entry.name)
        return
    child = posixpath.join(directory, entry.name)
    attr = entry.attr if entry.attr is not None else vol.lstat(child)
    emit(long_line(entry.name, attr, vol.readlink(child) if attr.is_symlink() else None))


@app.command("stat")
def stat_cmd(
    meta: MetaOpt,
    path: PathArg,
    as_json: JsonOpt = False,
    dereference: Annotated[bool, typer.Option("-L", "--dereference", help="Follow a symlink.")] = False,
    txid: TxidOpt = None,
    at: AtOpt = None,
) -> None:
    """Attributes of a path (of a symlink itself unless -L)."""
    path = vpath(path)
    with open_volume(meta, read_only=True, txid=txid, at=at) as vol:
        attr = vol.stat(path, follow_symlinks=dereference)
        target = vol.readlink(path) if attr.is_symlink() else None
        xattrs = vol.listxattr(path, follow_symlinks=dereference)
    record = attr_record(path, attr, target, xattrs)
    if as_json:
        emit(json.dumps(record, indent=2))
        return
    emit(f"  File: {path}" + (f" -> {target}" if target is not None else ""))
    emit(f"  Type: {record['type']}")
    emit(f" Inode: {attr.st_ino}  Parent: {attr.parent}  Links: {attr.st_nlink}")
    emit(f"  Size: {attr.st_size}")
    emit(f"Access: ({record['mode']}/{record['permissions']})  Uid: {attr.st_uid}  Gid: {attr.st_gid}")
    emit(f"Access: {_time(attr.st_atime_ns)}")
    emit(f"Modify: {_time(attr.st_mtime_ns)}")
    emit(f"Change: {_time(attr.st_ctime_ns)}")
    if xattrs:
        emit(f"Xattrs: {', '.join(xattrs)}")


@app.command("put")
def put_cmd(
    meta: MetaOpt,
    paths: Annotated[list[str], typer.Argument(help="Local files ('-' for stdin; directories with -r), then the "
                                                    "destination in the volume (an existing directory: keep the "
                                                    "names; it must be one for several sources).",
                                               metavar="SRC... DST")],
    recursive: Annotated[bool, typer.Option("-r", "-R", "--recursive", help="Copy directories and their contents "
                                                                           "(symbolic links stay links).")] = False,
    no_target_dir: NoTargetOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Copy local files (with -r, trees) into the volume, streaming; each file is replaced atomically.
    One process for the whole copy: a tree goes in at the Python API's speed."""
    if len(paths) < 2:
        raise typer.BadParameter("give at least one source and a destination", param_hint="SRC... DST")
    *sources, path = paths
    if STDIO in sources and len(sources) > 1:
        raise typer.BadParameter("'-' (stdin) must be the only source", param_hint="SRC... DST")
    stats = CopyStats(progress=sys.stderr.isatty() if progress is None else progress)
    with open_volume(meta) as vol:
        if len(sources) > 1:
            target_dir = vpath(path)
            if no_target_dir or not _is_dir(vol, target_dir):
                raise CLIError(f"{target_dir}: not a directory (several sources go into one)")
        for local in sources:
            name = None if local == STDIO else os.path.basename(local.rstrip("/"))
            dst = into_directory(vol, name, path, no_target_dir)
            if local == STDIO:
                put_stream(vol, sys.stdin.buffer, dst, 0o666)
            elif os.path.isdir(local) and not os.path.islink(local):
                if not recursive:
                    raise fs_error(errno.EISDIR, local)
                put_tree(vol, local, dst, stats)
            else:
                put_file(vol, local, dst, stats)
    if recursive or len(sources) > 1:
        emit(f"put {copy_summary(stats)}")


def _is_dir(vol: Volume, path: str) -> bool:
    try:
        return vol.stat(path).is_dir()
    except (FileNotFoundError, NotADirectoryError):
        return False


def copy_summary(stats: CopyStats) -> str:
    """'3 files (1.2 MiB), 1 directory, 0 symbolic links'."""
    dirs = plural(stats.dirs, "directory", "directories")
    return f"{plural(stats.files, 'file')} ({human_size(stats.bytes)}), {dirs}, {plural(stats.links, 'symbolic link')}"


@app.command("get")
def get_cmd(
    meta: MetaOpt,
    path: PathArg,
    local: Annotated[str, typer.Argument(help="Local destination ('-' for stdout; a directory: keep the name).")],
    recursive: Annotated[bool, typer.Option("-r", "-R", "--recursive", help="Copy a directory and its "
                                                                           "contents.")] = False,
    progress: ProgressOpt = None,
    txid: TxidOpt = None,
    at: AtOpt = None,
) -> None:
    """Copy a file (with -r, a tree) out of the volume, streaming (each local file appears whole
    or not at all)."""
    path = vpath(path)
    stats = CopyStats(progress=sys.stderr.isatty() if progress is None else progress)
    with open_volume(meta, read_only=True, txid=txid, at=at) as vol, reading(path):
        is_dir = _is_dir(vol, path)
        if is_dir and not recursive:
            raise fs_error(errno.EISDIR, path)
        if local == STDIO:
            if is_dir:
                raise CLIError(f"{path}: a directory cannot go to stdout")
            with vol.open_file(path) as f:
                f.copy_to(_stdout())
            return
        dest = os.path.join(local, _basename(path) or "root") if os.path.isdir(local) else local
        if is_dir:
            get_tree(vol, path, dest, stats)
            emit(f"got {copy_summary(stats)}")
        else:
            get_file(vol, path, dest, stats)


@app.command("cat")
def cat_cmd(
    meta: MetaOpt,
    paths: Annotated[list[str], typer.Argument(help="Files inside the volume.")],
    txid: TxidOpt = None,
    at: AtOpt = None,
) -> None:
    """Write files to stdout, streaming."""
    with open_volume(meta, read_only=True, txid=txid, at=at) as vol:
        out = _stdout()
        for p in paths:
            with vol.open_file(vpath(p)) as f, reading(vpath(p)):
                f.copy_to(out)
        out.flush()


@app.command("mkdir")
def mkdir_cmd(
    meta: MetaOpt,
    paths: Annotated[list[str], typer.Argument(help="Directories to create.")],
    parents: Annotated[
        bool, typer.Option("-p", "--parents", help="Create missing parents; no error if it exists.")
    ] = False,
) -> None:
    """Create directories."""
    with open_volume(meta) as vol:
        for p in paths:
            if parents:
                vol.makedirs(vpath(p), exist_ok=True)
            else:
                vol.mkdir(vpath(p))


@app.command("rm")
def rm_cmd(
    meta: MetaOpt,
    paths: Annotated[list[str], typer.Argument(help="Paths to remove.")],
    recursive: Annotated[
        bool, typer.Option("-r", "-R", "--recursive", help="Remove directories and their contents.")
    ] = False,
    force: Annotated[bool, typer.Option("-f", "--force", help="Ignore paths that do not exist.")] = False,
) -> None:
    """Remove files (and with -r, directories); with trash on, they move to .trash."""
    with open_volume(meta) as vol:
        for p in map(vpath, paths):
            if is_root(p):
                raise CLIError(f"{p}: refusing to remove the root directory")
            try:
                attr = vol.lstat(p)
            except FileNotFoundError:
                if force:
                    continue
                raise
            if attr.is_dir():
                if not recursive:
                    raise fs_error(errno.EISDIR, p)
                vol.rmtree(p)
            else:
                vol.unlink(p)


@app.command("mv")
def mv_cmd(meta: MetaOpt, src: PathArg, dst: PathArg, no_target_dir: NoTargetOpt = False) -> None:
    """Rename or move (into DST when it is a directory), replacing a file or empty directory."""
    src = vpath(src)
    with open_volume(meta) as vol:
        vol.rename(src, into_directory(vol, _basename(src), dst, no_target_dir))


@app.command("ln")
def ln_cmd(
    meta: MetaOpt,
    src: Annotated[str, typer.Argument(help="Existing path (with -s: the link's target, stored as given).")],
    dst: PathArg,
    symbolic: Annotated[bool, typer.Option("-s", "--symbolic", help="Make a symbolic link.")] = False,
    no_target_dir: NoTargetOpt = False,
) -> None:
    """Make a hard link (or with -s a symbolic link) DST to SRC."""
    with open_volume(meta) as vol:
        target = into_directory(vol, _basename(src), dst, no_target_dir)
        if symbolic:
            vol.symlink(src, target)
        else:
            vol.link(vpath(src), target)


@app.command("clone")
def clone_cmd(
    meta: MetaOpt,
    src: PathArg,
    dst: PathArg,
    preserve: Annotated[bool, typer.Option("--preserve", "-p", help="Keep owner, mode and times.")] = False,
    no_target_dir: NoTargetOpt = False,
) -> None:
    """Copy a file or a tree without copying bytes (the copy shares the original's slices)."""
    src = vpath(src)
    with open_volume(meta) as vol:
        vol.clone(src, into_directory(vol, _basename(src), dst, no_target_dir), preserve=preserve)


@app.command("gc")
def gc_cmd(
    meta: MetaOpt,
    delete: Annotated[bool, typer.Option("--delete", help="Delete leaked objects and finish pending deletes.")] = False,
    skip_age: Annotated[
        float | None,
        typer.Option("--skip-age", min=0, help="Leave objects younger than this many seconds alone (default 3600)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find block objects no metadata refers to (and with --delete, remove them)."""
    with open_volume(meta, read_only=not delete) as vol:
        report = vol.gc(delete=delete, skip_age=skip_age)
    if as_json:
        emit(json.dumps({
            "scanned": report.scanned, "valid": report.valid, "valid_bytes": report.valid_bytes,
            "pending": report.pending, "delayed": report.delayed, "skipped": report.skipped,
            "leaked": list(report.leaked), "leaked_bytes": report.leaked_bytes, "foreign": list(report.foreign),
            "deleted_objects": report.deleted_objects if delete else 0,
            "released_files": report.released_files if delete else 0,
            "released_slices": report.released_slices if delete else 0,
            "removed_detached": report.removed_detached if delete else 0}, indent=2))
        return
    emit(f"scanned {plural(report.scanned, 'object')}: {report.valid} valid ({human_size(report.valid_bytes)}), "
         f"{report.pending} pending, {report.delayed} delayed, {report.skipped} skipped as too young")  # fmt: skip
    emit(f"leaked: {plural(len(report.leaked), 'object')} ({human_size(report.leaked_bytes)})")
    for key in report.leaked:
        emit(f"  {key}")
    for key in report.foreign:
        emit(f"not a block (left alone): {key}")
    if delete:
        emit(f"deleted {plural(report.deleted_objects, 'object')}; released {plural(report.released_files, 'file')} "
             f"and {plural(report.released_slices, 'slice')}; removed "
             f"{plural(report.removed_detached, 'stale clone')}")  # fmt: skip


@app.command("fsck")
def fsck_cmd(
    meta: MetaOpt,
    repair: Annotated[
        bool, typer.Option("--repair", help="Rewrite nlink, dir stats and counters that are wrong.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that every referenced block exists with the right size and that the metadata agrees
    with itself. Prints each problem; exits 1 when any is found."""
    with open_volume(meta, read_only=not repair) as vol:
        report = vol.fsck(repair=repair)
        after = vol.fsck() if repair and not report.ok else report
    if as_json:
        emit(json.dumps({
            "ok": after.ok, "files": report.files, "slices": report.slices, "blocks": report.blocks,
            "problems": list(report.problems), "missing_blocks": list(report.missing_blocks),
            "broken_files": [{"inode": inode, "path": where} for inode, where in sorted(report.broken_files.items())],
            "repaired": list(report.repaired),
            "left_after_repair": len(after.problems) + len(after.missing_blocks) if after is not report else None},
            indent=2))
        if not after.ok:
            raise typer.Exit(EXIT_FAILURE)
        return
    for problem in report.problems:
        emit(problem)
    for block in report.missing_blocks:
        emit(f"missing block {block}")
    for inode, where in sorted(report.broken_files.items()):
        emit(f"broken file {where} (inode {inode})")
    for fixed in report.repaired:
        emit(f"repaired: {fixed}")
    summary = (f"{plural(report.files, 'file')}, {plural(report.slices, 'slice')}, "
               f"{plural(report.blocks, 'block')} checked")
    if not after.ok:
        found = len(after.problems) + len(after.missing_blocks)
        left = " left after repair" if after is not report else ""
        raise CLIError(f"fsck found {plural(found, 'problem')}{left} ({summary})")
    emit(f"ok after repair: {summary}" if after is not report else f"ok: {summary}")


def _counters(vol: Volume) -> dict[str, int]:
    rows = vol.engine.read(lambda c: c.execute("SELECT name, value FROM jfs_counter ORDER BY name").fetchall())
    return {str(name): as_int(value) for name, value in rows}


def _public_settings(vol: Volume) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(vol.settings.encode())
    for key in SECRET_SETTINGS:
        if settings.get(key):
            settings[key] = "removed"
    return settings


@app.command("status")
def status_cmd(meta: MetaOpt, as_json: JsonOpt = False, txid: TxidOpt = None, at: AtOpt = None) -> None:
    """Volume settings, space and inodes used, and the metadata counters."""
    with open_volume(meta, read_only=True, txid=txid, at=at) as vol:
        settings = _public_settings(vol)
        usage = vol.usage()
        counters = _counters(vol)
        data_url = show_url(vol.data_url)
        meta_txid = vol.txid
    record = {
        "Meta": show_url(meta),
        "TXID": f"{meta_txid:016x}" if meta_txid else None,
        "Data": data_url,
        "Setting": settings,
        "Usage": {"UsedSpace": usage.used_space, "UsedInodes": usage.total_inodes, "Capacity": usage.capacity,
                  "InodeLimit": usage.inode_limit},
        "Counters": counters,
    }  # fmt: skip
    if as_json:
        emit(json.dumps(record, indent=2))
        return
    emit(f"volume:      {settings.get('Name')} (UUID {settings.get('UUID')})")
    emit(f"metadata:    {record['Meta']}" + (f" (TXID {record['TXID']})" if record["TXID"] else ""))
    emit(f"data:        {data_url} (storage {settings.get('Storage')}, bucket {settings.get('Bucket')})")
    emit(
        f"block size:  {human_size(int(settings.get('BlockSize') or 0) << 10)}, compression "
        f"{settings.get('Compression', 'none')}, hash prefix {'on' if settings.get('HashPrefix') else 'off'}"
    )
    emit(f"trash:       {settings.get('TrashDays', 0)} days")
    limit = f" of {human_size(usage.capacity)}" if usage.capacity else ""
    inode_limit = f" of {usage.inode_limit}" if usage.inode_limit else ""
    emit(f"used space:  {usage.used_space} bytes ({human_size(usage.used_space)}){limit}")
    emit(f"used inodes: {usage.total_inodes}{inode_limit}")
    emit("counters:")
    for name, value in counters.items():
        emit(f"  {name:<20} {value}")


# --- entry point ----------------------------------------------------------------------------------


def quiet_library_logs() -> None:
    """Keep the libraries' warnings (ltxvfs's retries, a group commit lost to another writer) off
    the terminal: the command's own error line says what failed. BLOCKMAP_DEBUG=1 shows them."""
    root = logging.getLogger()
    if root.handlers:
        return
    if os.environ.get(DEBUG_ENV) == "1":
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    else:
        root.addHandler(logging.NullHandler())


def end_process_when_done() -> None:
    """For a command that leaves nothing to clean up in its process (`mount -d` once its mount
    process answered): `main` ends the process as soon as the command returns, without the
    interpreter's teardown of every loaded module (~0.1 s between the mount answering and the
    command returning). Only `main` acts on it: a command run under CliRunner returns as usual."""
    _context["end_when_done"] = True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Every failure becomes one line on stderr (usage errors
    exit 2, Ctrl-C prints 'interrupted' and exits 130)."""
    quiet_library_logs()
    _context.update(meta="", verbose=False, end_when_done=False)
    with InterruptGuard(f"{PROG}: interrupted") as guard:
        _context["guard"] = guard
        try:
            code = run_guarded(lambda: app(args=argv, prog_name=PROG, standalone_mode=False))
        finally:
            _context["guard"] = None
    if _context.get("end_when_done"):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return code


from blockmap import mountcli  # noqa: E402, F401 - registers `mount` and `umount` on app

if __name__ == "__main__":  # `python -m blockmap.cli`: run the imported module, where mountcli registered
    from blockmap.cli import main as imported_main

    sys.exit(imported_main())
