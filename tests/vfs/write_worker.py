"""A writer in a process of its own, for tests of what another process (or machine) does.

    python -m tests.vfs.write_worker '<json config>'

Modes:
- `sql`: run `statements` (one transaction each) through a writer, print the TXID, exit.
- `ledger`: commit transactions `start`, `start+1`, … forever (or `count` of them): each inserts
  `rows` rows of `ledger(seq, part, writer, pad)` in one transaction; after COMMIT returns it
  prints `ack <seq> <time.monotonic()>` and flushes, so the parent knows every acknowledged
  commit even if it kills this process at any moment. A conflict (SQLITE_BUSY) retries the same
  seq after rereading; with `writer` set, seq numbers are that writer's own. With `barrier`, it
  prints `ready` once open and waits for a line on stdin before the first commit; with `think`,
  it pauses up to that many seconds between commits.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

import apsw

from tests.vfs.writing import open_writer

LEDGER_SCHEMA = "CREATE TABLE IF NOT EXISTS ledger(seq INTEGER, part INTEGER, writer TEXT, pad BLOB, " \
                "PRIMARY KEY (writer, seq, part))"


def run_sql(config: dict[str, Any]) -> None:
    conn = open_writer(config["path"], config["url"], **config.get("params", {}))
    for sql in config["statements"]:
        conn.execute(sql)
    txid = conn.execute("PRAGMA litestream_txid").fetchall()[0][0]
    conn.close()
    print(txid, flush=True)


def run_ledger(config: dict[str, Any]) -> None:
    rng = random.Random(config.get("seed", 0))
    writer = config.get("writer", "w")
    rows = config.get("rows", 3)
    conn = open_writer(config["path"], config["url"], **config.get("params", {}))
    conn.setbusytimeout(config.get("busy_ms", 10000))
    while True:
        try:
            conn.execute(LEDGER_SCHEMA)
            break
        except apsw.BusyError:  # another writer created it first
            continue
    if config.get("barrier"):
        print("ready", flush=True)
        sys.stdin.readline()
    seq = config.get("start", 0)
    end = seq + config["count"] if config.get("count") else None
    while end is None or seq < end:
        pad = rng.randbytes(rng.choice((10, 200, 3000, 9000)))
        try:
            conn.execute("BEGIN IMMEDIATE")
            for part in range(rows):
                conn.execute("INSERT INTO ledger VALUES (?, ?, ?, ?)", (seq, part, writer, pad))
            conn.execute("COMMIT")
        except apsw.BusyError:
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            print(f"busy {seq}", flush=True)
            continue
        print(f"ack {seq} {time.monotonic()}", flush=True)
        seq += 1
        if config.get("think"):
            time.sleep(rng.uniform(0, config["think"]))  # a pause between commits, as an application has
    conn.close()
    print("done", flush=True)


def main(raw: str) -> None:
    config = json.loads(raw)
    {"sql": run_sql, "ledger": run_ledger}[config["mode"]](config)


if __name__ == "__main__":
    main(sys.argv[1])
