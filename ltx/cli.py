"""`ltxctl`: the operator's CLI for LTX replicas (ls, info, verify, import, restore, compact).

Every command takes a Litestream replica URL. Errors are one line on stderr and a non-zero
exit, never a traceback: `describe_error` maps every known exception to that line, in one place.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError

from ltx import timefmt
from ltx.clifmt import (
    EXIT_INTERRUPTED,
    InterruptGuard,
    format_age,
    human_size,
    plural,
    progress_bar,
    start_logging,
    store_error_line,
)
from ltx.cliopts import log_level_flag, version_flag
from ltx.compactor import LTXCompactionError
from ltx.errors import LTXError
from ltx.names import format_txid, parse_txid
from ltx.plan import MAX_COMPACTION_LEVEL, SNAPSHOT_LEVEL, EmptyReplicaError, RestorePlanError
from ltx.restore import DEFAULT_RESTORE_PARALLELISM
from ltx.store import InvalidURLError, StoreError
from ltx.verify import DEFAULT_VERIFY_PARALLELISM

#: Exit codes: a failure, a usage error (click's), an interrupt.
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: Set to 1 to get a traceback for an unexpected error (for developers).
DEBUG_ENV = "LTXCTL_DEBUG"
PROG = "ltxctl"

app = typer.Typer(name=PROG, help="Inspect, verify, import, restore and compact LTX replicas "
                                  "(Litestream 0.5 layout, file:// and s3:// URLs).",
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  no_args_is_help=True)


class CLIError(Exception):
    """A condition the CLI reports as is (exit 1)."""


class UsageError(CLIError):
    """A bad option value or combination (exit 2, as the parser's own usage errors)."""


@app.callback()
def _global_options(
    show_version: Annotated[bool, version_flag(PROG)] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log what happens (debug level) and show an "
                                                                 "error's full detail, causes included (as "
                                                                 f"{DEBUG_ENV}=1 does, which also shows a "
                                                                 "traceback).")] = False,
    log_level: Annotated[str | None, log_level_flag()] = None,
) -> None:
    """Options before the command: `ltxctl -v restore …`."""
    try:
        start_logging(verbose, log_level)
    except ValueError as exc:
        raise UsageError(f"--log-level: {exc}") from exc
    _context["verbose"] = "1" if verbose else ""


# --- parsing ------------------------------------------------------------------------------------

def parse_duration(text: str) -> timedelta:
    """A duration option (ltx.timefmt: Go's form as Litestream's config takes it, e.g. 30s, 1h30m)."""
    try:
        return timefmt.parse_duration(text, negative=True)
    except timefmt.TimeFormatError as exc:
        raise UsageError(str(exc)) from exc


def parse_timestamp(text: str) -> datetime:
    """A time option (ltx.timefmt: RFC 3339 with a zone, or a relative time such as '5 minutes ago')."""
    try:
        return timefmt.parse_time(text)
    except timefmt.TimeFormatError as exc:
        raise UsageError(str(exc)) from exc


def parse_txid_option(text: str) -> int:
    try:
        txid = parse_txid(text.strip().removeprefix("0x"))
    except ValueError as exc:
        raise UsageError(f"invalid TXID {text!r} (give it in hex, as Litestream prints it)") from exc
    if txid == 0:
        raise UsageError("TXID 0 does not exist (the first transaction is 0000000000000001)")
    return txid


# --- errors -------------------------------------------------------------------------------------

_context: dict[str, str] = {"url": "", "verbose": ""}


def describe_error(exc: BaseException, url: str = "") -> str:
    """The one line an exception becomes on stderr."""
    from ltx.compaction import CompactionError
    from ltx.importer import DatabaseImportError
    from ltx.restore import RestoreError

    where = url.rstrip("/")
    if isinstance(exc, StoreError):
        text = store_error_line(exc)
    elif isinstance(exc, RestorePlanError | InvalidURLError | RestoreError | DatabaseImportError
                    | CompactionError | CLIError):
        text = str(exc)
    elif isinstance(exc, LTXCompactionError):
        text = f"cannot merge {where + '/' if where else ''}{exc.name}: {exc.reason}"
    elif isinstance(exc, LTXError):
        obj = f"{where}/{exc.name}" if where and exc.name else exc.name or "LTX file"
        text = f"corrupt LTX file {obj} at offset {exc.offset}: {exc.reason}"
    elif isinstance(exc, OSError):
        target = exc.filename if exc.filename is not None else ""
        text = f"{target}: {exc.strerror or exc}" if target else str(exc.strerror or exc)
    else:
        text = f"unexpected error: {type(exc).__name__}: {exc}"
    return " ".join(text.split())


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return code


@contextmanager
def _replica(url: str) -> Iterator[Any]:
    from ltx.replica import Replica

    _context["url"] = url
    replica = Replica.open(url)
    _context["url"] = replica.url
    try:
        yield replica
    finally:
        replica.close()


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


# --- commands -----------------------------------------------------------------------------------

UrlArg = Annotated[str, typer.Argument(help="Replica URL: file:///path or s3://bucket/path?endpoint=…")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command("ls")
def ls_cmd(url: UrlArg, level: Annotated[int | None, typer.Option("--level", "-l", min=0, max=SNAPSHOT_LEVEL,
                                                                  help="Only this level (0-9).")] = None,
           as_json: JsonOpt = False) -> None:
    """List every LTX file per level: TXIDs, size, creation time, whether a page checksum sidecar
    is beside it."""
    from ltx.info import file_record, format_time
    from ltx.replica import LEVELS

    with _replica(url) as replica:
        levels = replica.list_levels((level,) if level is not None else LEVELS)
        files = [f for lvl in sorted(levels) for f in levels[lvl]]
        if not files and (level is None or not any(replica.list_levels(LEVELS).values())):
            raise EmptyReplicaError(replica.url)
    if as_json:
        _echo_json([file_record(f) for f in files])
        return
    typer.echo(f"{'level':>5}  {'min_txid':16}  {'max_txid':16}  {'size':>10}  {'created':24}  sums")
    for f in files:
        typer.echo(f"{f.level:>5}  {format_txid(f.min_txid)}  {format_txid(f.max_txid)}  {human_size(f.size):>10}  "
                   f"{format_time(f.created_at):24}  {'yes' if f.sums_key else '-'}")


@app.command("info")
def info_cmd(
    url: UrlArg,
    as_json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the newest TXID: one line (with --json, one "
                                                        "JSON object) per --interval, until Ctrl-C.")] = False,
    interval: Annotated[str, typer.Option("--interval", help="Time between looks with --watch.")] = "1s",
    count: Annotated[int | None, typer.Option("--count", min=1, help="With --watch, stop after this many "
                                                                    "lines.")] = None,
) -> None:
    """Current TXID, its commit time and age, page size, database size, files per level, newest
    snapshot, restore plan; with --watch, the TXID and its age as they move (the replica's lag)."""
    from ltx.info import format_time, replica_info

    if watch:
        seconds = parse_duration(interval).total_seconds()
        if seconds <= 0:
            raise UsageError(f"--interval {interval!r}: must be above 0")
        _watch_info(url, seconds, count, as_json)
        return
    with _replica(url) as replica:
        info = replica_info(replica)
    now = datetime.now(UTC)
    if as_json:
        _echo_json({**info.record(), "age_seconds": round(info.age(now), 3)})
        return
    lines = [
        f"url:             {info.url}",
        f"txid:            {format_txid(info.txid)}",
        f"updated:         {format_time(info.updated)} ({format_age(info.age(now))} ago)",
        f"page size:       {info.page_size}",
        f"database size:   {info.commit} pages, {info.database_size} bytes ({human_size(info.database_size)})",
    ]
    snap = info.newest_snapshot
    lines.append(f"newest snapshot: {snap.key} ({format_time(snap.created_at)})" if snap else "newest snapshot: none")
    lines.append("levels:")
    for lvl in info.levels:
        lines.append(f"  {lvl.level}: {plural(lvl.files, 'file'):>11} {human_size(lvl.bytes):>11}  TXIDs "
                     f"{format_txid(lvl.min_txid)}-{format_txid(lvl.max_txid)}")
    lines.append(f"restore plan:    {plural(len(info.plan), 'file')}, {human_size(sum(f.size for f in info.plan))}")
    for f in info.plan:
        lines.append(f"  {f.key}")
    typer.echo("\n".join(lines))


def _watch_info(url: str, interval: float, count: int | None, as_json: bool) -> None:
    """`info --watch`: look every `interval` seconds; print the newest TXID, its time and age."""
    import time

    from ltx.info import format_time, replica_info

    shown = 0
    with _replica(url) as replica:
        while count is None or shown < count:
            if shown:
                time.sleep(interval)
            info = replica_info(replica)
            now = datetime.now(UTC)
            age = info.age(now)
            if as_json:
                typer.echo(json.dumps({"time": format_time(now), "txid": format_txid(info.txid),
                                       "updated": format_time(info.updated), "age_seconds": round(age, 3)}))
            else:
                typer.echo(f"{format_time(now)}  txid {format_txid(info.txid)}  updated {format_time(info.updated)}"
                           f"  age {format_age(age)}")
            shown += 1
@app.command("verify")
def verify_cmd(url: UrlArg, parallelism: Annotated[int, typer.Option(min=1, help="Files decoded at once.")]
               = DEFAULT_VERIFY_PARALLELISM, as_json: JsonOpt = False) -> None:
    """Decode every file, check checksums, each level's contiguity and the restore plan.
    Prints one line per problem; exits 1 when anything is wrong."""
    from ltx.verify import Verifier

    problems = []
    with _replica(url) as replica:
        verifier = Verifier(replica, parallelism)
        for problem in verifier.problems():
            problems.append(problem)
            if not as_json:
                typer.echo(str(problem))
    stats = verifier.stats
    if as_json:
        _echo_json({"ok": not problems, "files": stats.files, "bytes": stats.bytes,
                    "problems": [{"key": p.key, "object": p.object, "message": p.message} for p in problems]})
        if problems:
            raise typer.Exit(EXIT_FAILURE)
        return
    summary = f"{plural(stats.files, 'file')}, {human_size(stats.bytes)} checked"
    if problems:
        typer.echo(f"{plural(len(problems), 'problem')} found ({summary})", err=True)
        raise typer.Exit(EXIT_FAILURE)
    typer.echo(f"ok: {summary}", err=True)


@app.command("import")
def import_cmd(db: Annotated[str, typer.Argument(help="The SQLite database to seed the replica from.")],
               url: UrlArg,
               force: Annotated[bool, typer.Option("--force", help="Replace the files of a non-empty replica.")]
               = False,
               tmpdir: Annotated[str | None, typer.Option("--tmpdir", help="Where the database image and the "
                                                                         "snapshot are staged (about twice "
                                                                         "the database's size).")] = None,
               as_json: JsonOpt = False,
               progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar of "
                                                             "the upload (default: on a terminal).")] = None,
               ) -> None:
    """Seed a replica from a SQLite database: a TXID-1 snapshot at level 0 and level 9."""
    from ltx.importer import import_database

    show = (sys.stderr.isatty() and not as_json) if progress is None else progress
    with _replica(url) as replica, progress_bar("uploading", show) as on_progress:
        result = import_database(db, replica, force=force, tmpdir=tmpdir, progress=on_progress)
    if as_json:
        _echo_json({"database": db, "txid": format_txid(1), "page_size": result.page_size, "pages": result.commit,
                    "ltx_bytes": result.file_size, "replaced": result.deleted, "keys": list(result.keys)})
        return
    note = f", replacing {plural(result.deleted, 'file')}" if result.deleted else ""
    typer.echo(f"imported {db} as TXID {format_txid(1)}: {result.commit} pages of {result.page_size} bytes"
               f" ({human_size(result.file_size)} LTX){note}")
    for key in result.keys:
        typer.echo(f"  wrote {key}")


@app.command("restore")
def restore_cmd(
    url: UrlArg,
    output: Annotated[str, typer.Option("--output", "-o", help="Path of the restored database.")],
    txid: Annotated[str | None, typer.Option("--txid", help="Restore to this TXID (hex).")] = None,
    timestamp: Annotated[str | None, typer.Option("--timestamp", help="Restore the state as of this time: "
                                                                      "RFC 3339, or e.g. '5 minutes ago'.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output; restore even when the "
                                                        "last file's commit disagrees with page 1's size.")] = False,
    parallelism: Annotated[int, typer.Option(min=1, max=256, help="Range GETs in flight.")]
    = DEFAULT_RESTORE_PARALLELISM,
    integrity_check: Annotated[str, typer.Option("--integrity-check", help="Check the result: none, quick, "
                                                                          "full.")] = "none",
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a "
                                                                                 "terminal).")] = None,
    if_replica_exists: Annotated[bool, typer.Option("--if-replica-exists", "-if-replica-exists",
                                                    help="Exit 0 without restoring when the replica holds no LTX "
                                                         "files (as litestream's -if-replica-exists).")] = False,
    if_db_not_exists: Annotated[bool, typer.Option("--if-db-not-exists", "-if-db-not-exists",
                                                   help="Exit 0 without restoring when the output already exists "
                                                        "(as litestream's -if-db-not-exists).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore the database (latest, or at --txid / --timestamp) as `litestream restore` would."""
    from ltx.restore import INTEGRITY_CHECKS, restore

    if txid is not None and timestamp is not None:
        raise UsageError("give --txid or --timestamp, not both")
    if integrity_check not in INTEGRITY_CHECKS:
        raise UsageError(f"--integrity-check must be one of {', '.join(INTEGRITY_CHECKS)}")
    target_txid = parse_txid_option(txid) if txid is not None else 0
    target_time = parse_timestamp(timestamp) if timestamp is not None else None
    if if_db_not_exists and os.path.lexists(output):
        _restore_skipped(as_json, output, "database already exists", f"{output} already exists: nothing restored")
        return
    show = (sys.stderr.isatty() and not as_json) if progress is None else progress
    with _replica(url) as replica, progress_bar("restoring", show) as on_progress:
        try:
            result = restore(replica, output, txid=target_txid, timestamp=target_time, force=force,
                             parallelism=parallelism, progress=on_progress, integrity=integrity_check)
        except EmptyReplicaError:
            if not if_replica_exists:
                raise
            _restore_skipped(as_json, output, "no replica", f"no LTX files at {replica.url}: nothing restored")
            return
    if as_json:
        _echo_json({"restored": True, "path": result.path, "txid": format_txid(result.txid),
                    "page_size": result.page_size, "pages": result.commit, "size": result.size,
                    "files": len(result.plan), "bytes_fetched": result.bytes_fetched,
                    "integrity_check": integrity_check})
        return
    checked = f"; integrity check ({integrity_check}): ok" if integrity_check != "none" else ""
    typer.echo(f"restored {result.path} at TXID {format_txid(result.txid)}: {result.commit} pages of "
               f"{result.page_size} bytes from {plural(len(result.plan), 'file')} "
               f"({human_size(result.bytes_fetched)}){checked}")


def _restore_skipped(as_json: bool, output: str, reason: str, line: str) -> None:
    """What `restore` prints when -if-db-not-exists / -if-replica-exists make it do nothing."""
    if as_json:
        _echo_json({"restored": False, "path": output, "reason": reason})
    else:
        typer.echo(line)



@app.command("compact")
def compact_cmd(
    url: UrlArg,
    level: Annotated[int | None, typer.Option("--level", min=1, max=SNAPSHOT_LEVEL,
                                              help="Compact into this level only (1-8; 9 takes a snapshot).")] = None,
    all_levels: Annotated[bool, typer.Option("--all", help="Every level in turn, then a snapshot (the "
                                                          "default).")] = False,
    l0_retention: Annotated[str, typer.Option("--l0-retention", help="Keep level-0 files this long after level 1 "
                                                                     "covers them.")] = "5m",
    snapshot_retention: Annotated[str, typer.Option("--snapshot-retention", help="Keep snapshots this long.")]
    = "24h",
    retention: Annotated[bool, typer.Option("--retention/--no-retention", help="Apply retention after "
                                                                               "compacting.")] = True,
    scheduled: Annotated[bool, typer.Option("--scheduled", help="Skip levels whose Litestream interval "
                                                                "(30s, 5m, 1h, snapshot 24h) has not passed.")]
    = False,
    hint: Annotated[bool, typer.Option("--hint/--no-hint", help="Bring the hint file (page 1 and interior "
                                                               "b-tree pages for cold readers) to the latest "
                                                               "state; without a current one this reads the "
                                                               "whole database once.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """One compaction step per level by Litestream's rules, a level-9 snapshot, and retention."""
    from ltx.compaction import (
        DEFAULT_COMPACTION_INTERVALS,
        DEFAULT_SNAPSHOT_INTERVAL,
        highest_level,
        run,
    )
    from ltx.hint import refresh_hint

    if level is not None and all_levels:
        raise UsageError("give --level or --all, not both")
    if level is not None and level > MAX_COMPACTION_LEVEL and level != SNAPSHOT_LEVEL:
        raise UsageError(f"--level must be 1-{MAX_COMPACTION_LEVEL} or {SNAPSHOT_LEVEL}")
    l0_keep = parse_duration(l0_retention)
    snap_keep = parse_duration(snapshot_retention)
    intervals = {**DEFAULT_COMPACTION_INTERVALS, SNAPSHOT_LEVEL: DEFAULT_SNAPSHOT_INTERVAL} if scheduled else None
    with _replica(url) as replica:
        levels = [level] if level is not None else [*range(1, highest_level(replica) + 1), SNAPSHOT_LEVEL]
        report = run(replica, levels, l0_retention=l0_keep, snapshot_retention=snap_keep, retention=retention,
                     intervals=intervals)
        refreshed = refresh_hint(replica) if hint else None
    if as_json:
        hint_record: dict[str, Any] | None = None
        if refreshed is not None:
            hint_record = ({"txid": format_txid(refreshed.header.txid), "pages": refreshed.header.page_count,
                            "how": refreshed.how} if refreshed.header is not None else {"txid": None})
        _echo_json({
            "steps": [{"level": st.level, "wrote": st.file.key if st.file is not None else None,
                       "bytes": st.file.size if st.file is not None else 0, "inputs": len(st.inputs),
                       "reason": None if st.file is not None else st.reason} for st in report.steps],
            "hint": hint_record, "deleted": [f.key for f in report.deleted]})
        return
    for step in report.steps:
        if step.file is not None:
            typer.echo(f"level {step.level}: wrote {step.file.key} from {plural(len(step.inputs), 'file')} "
                       f"({human_size(step.file.size)})")
        else:
            typer.echo(f"level {step.level}: nothing to do ({step.reason})")
    if refreshed is None:
        pass
    elif refreshed.header is not None:
        typer.echo(f"hint: TXID {format_txid(refreshed.header.txid)}, {refreshed.header.page_count} pages "
                   f"({refreshed.how})")
    else:
        typer.echo("hint: none (too many interior pages)")
    for f in report.deleted:
        typer.echo(f"deleted {f.key}")
    if retention:
        typer.echo(f"retention: {plural(len(report.deleted), 'file')} deleted")


# --- entry point ----------------------------------------------------------------------------------

#: Entry-point group through which other packages add commands (`register(app)`), so that
#: `ltx` never imports them (the hydrator adds `hydrate`).
PLUGIN_GROUP = "ltxctl.commands"
_plugins_loaded = False


def load_plugins() -> None:
    """Let installed packages add their commands; a broken plugin is skipped with a warning."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()(app)
        except Exception as exc:  # noqa: BLE001 - a plugin must not break the other commands
            sys.stderr.write(f"{PROG}: warning: command {ep.name!r} unavailable: {describe_error(exc)}\n")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Every failure becomes one line on stderr (with -v, the
    causes follow on their own lines); usage errors exit 2, an interrupt 130."""
    load_plugins()
    _context.update(url="", verbose="")
    with InterruptGuard(f"{PROG}: error: interrupted") as guard:
        return _run(argv, guard)


def _run(argv: list[str] | None, guard: InterruptGuard) -> int:
    try:
        rv = app(args=argv, prog_name=PROG, standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `ltxctl` alone: the help, and a usage exit
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        return EXIT_USAGE
    except typer.TyperException as exc:  # usage errors (exit code 2) and the like
        return fail(" ".join(exc.format_message().split()), getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        guard.report()
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes a line
        if guard.fired:  # an error raised while unwinding from Ctrl-C
            guard.report()
            return EXIT_INTERRUPTED
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
        code = fail(describe_error(exc, _context["url"]), code)
        if _context["verbose"]:
            for cause in _causes(exc):
                sys.stderr.write(f"  caused by: {type(cause).__name__}: {' '.join(str(cause).split())}\n")
        return code
    if guard.fired:  # typer turned the KeyboardInterrupt into a silent 130
        guard.report()
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) else 0


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = {id(exc)}
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


if __name__ == "__main__":
    sys.exit(main())
