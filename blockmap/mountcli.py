"""The `blockmap mount` and `blockmap umount` commands (registered on blockmap.cli's app)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from blockmap.cli import (
    AtOpt,
    CLIError,
    MetaOpt,
    TxidOpt,
    app,
    describe_error,
    end_process_when_done,
    handle_own_signals,
    note_meta,
    parse_at_option,
    parse_txid_option,
)
from blockmap.mount import DEFAULT_MOUNT_SYNC, MountConfig, run_background, run_foreground, umount

#: `--cache-size` / `--buffer-size` without a unit are MiB, as `juicefs mount` takes them.
DEFAULT_CACHE_SIZE_MIB = 1024
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SYNC = re.compile(r"^(commit|interval:\S+)$")


def parse_size(option: str, text: str) -> int:
    """A size as `juicefs mount` takes it: MiB without a unit, or with K, M, G, T."""
    m = _SIZE.match(text)
    if m is None or int(m.group(1)) == 0:
        raise CLIError(f"{option} {text!r}: expected a size such as 1024 (MiB), 512M or 10G")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


@app.command("mount")
def mount_cmd(
    meta: MetaOpt,
    mountpoint: Annotated[str, typer.Argument(help="An empty directory to mount the volume on.")],
    data: Annotated[str | None, typer.Option("--data", help="The data store's URL, when not the one the volume "
                                             "was formatted with (another endpoint of the same bucket).")] = None,
    background: Annotated[bool, typer.Option("--background", "-d",
                                             help="Return once the mount answers; serve in the background.")] = False,
    cache_dir: Annotated[str | None, typer.Option("--cache-dir", help="Local cache of blocks and the hydrated "
                         "metadata (default /var/blockmapCache as root, else ~/.blockmap/cache).")] = None,
    cache_size: Annotated[str, typer.Option("--cache-size", help="Bytes of blocks kept in --cache-dir "
                                            "(MiB without a unit).")] = str(DEFAULT_CACHE_SIZE_MIB),
    buffer_size: Annotated[str, typer.Option("--buffer-size", help="Memory for blocks: uploads waiting (all "
                                             "files) and the memory cache (MiB without a unit).")] = "300",
    read_only: Annotated[bool, typer.Option("--read-only", help="Mount read-only (follows the writer's "
                                                                "new commits).")] = False,
    txid: TxidOpt = None,
    at: AtOpt = None,
    sync: Annotated[str, typer.Option("--sync", help="commit (every operation in the store before it returns) "
                                      "or interval:DURATION (group commit: a crash loses at most that interval; "
                                      "fsync still waits for the store).")] = DEFAULT_MOUNT_SYNC,
    log_file: Annotated[str | None, typer.Option("--log", help="Write the log to this file (background "
                                                 "default: blockmap-mount.log in --cache-dir).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Log every request.")] = False,
    no_hydrate: Annotated[bool, typer.Option("--no-hydrate", help="Read the metadata from the store by "
                                             "range only; do not download it into --cache-dir.")] = False,
) -> None:
    """Mount the volume as a POSIX file system (FUSE); foreground until unmounted or interrupted."""
    handle_own_signals()  # Ctrl-C ships and unmounts: never cut short by the CLI's forced exit
    note_meta(meta)
    if at is not None:
        parse_at_option(at)  # a bad --at is a usage error naming it (the volume parses it again)
    if not _SYNC.match(sync.strip()):
        raise CLIError(f"--sync {sync!r}: expected commit or interval:DURATION (e.g. interval:1s)")
    cfg = MountConfig(
        meta_url=meta, mountpoint=mountpoint, data_url=data, cache_dir=cache_dir,
        cache_size=parse_size("--cache-size", cache_size), buffer_size=parse_size("--buffer-size", buffer_size),
        read_only=read_only, txid=parse_txid_option(txid) if txid else 0, at=at, sync=sync.strip(),
        log_file=log_file, debug=debug, hydrate=not no_hydrate,
    )  # fmt: skip
    if background:
        run_background(cfg, describe_error)  # 0 once the mount answers; else MountError
        end_process_when_done()  # this process only waited for the answer: nothing to tear down
        return
    code = run_foreground(cfg)
    if code:
        raise typer.Exit(code)


@app.command("umount")
def umount_cmd(
    mountpoint: Annotated[str, typer.Argument(help="Where the volume is mounted.")],
    lazy: Annotated[bool, typer.Option("--lazy", "-z", help="Detach now even if busy (fusermount3 -z).")] = False,
) -> None:
    """Unmount: record open files, ship what is pending, wait until the mount process has finished."""
    umount(mountpoint, lazy=lazy)
