"""Several `blockmap put` processes on one volume: each finishes (success or a clean one-line
error) within a deadline, and every file a process acknowledged is in the volume."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from blockmap.counters import IdAllocator
from blockmap.errors import CommitsLostError
from blockmap.volume import Volume
from tests.blockmap.conftest import TEST_BLOCK_SIZE
from tests.conftest import unique_prefix

WRITERS = 4
FILES_EACH = 6
DEADLINE = 240


def test_lost_reservation_resets_without_deadlock() -> None:
    """The reservation's flush reports lost commits, which resets the allocator from inside
    `next_slice_id`: it must raise, not wait on its own lock."""
    ids: IdAllocator

    def reserve(counter: str, batch: int) -> int:
        ids.reset()  # what MetaDB.on_lost does before CommitsLostError
        raise CommitsLostError("metadata", "lost")

    ids = IdAllocator(reserve)
    outcome: list[BaseException] = []

    def take() -> None:
        try:
            ids.next_slice_id()
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    t = threading.Thread(target=take, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "next_slice_id deadlocked on its own lock"
    assert len(outcome) == 1 and isinstance(outcome[0], CommitsLostError)


@pytest.mark.parametrize("home", ["file", "s3"])
def test_concurrent_put_processes_finish(home: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if home == "s3":
        server = request.getfixturevalue("s3_server")
        env = {**os.environ, **request.getfixturevalue("s3_env")}
        meta, data = server.url(unique_prefix(request) + "-meta"), f"file://{tmp_path}/data"
    else:
        env = dict(os.environ)
        meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                      env.get("PYTHONPATH")]))
    Volume.format(meta, data, "writers", block_size=TEST_BLOCK_SIZE).close()
    rng = random.Random(7)
    sources: dict[str, bytes] = {}
    for w in range(WRITERS):
        for i in range(FILES_EACH):
            body = rng.randbytes(rng.randrange(1, 3 * TEST_BLOCK_SIZE))
            src = tmp_path / f"w{w}-f{i}.bin"
            src.write_bytes(body)
            sources[src.name] = body
    # Each process puts its files one command at a time, so the processes interleave commits.
    script = (
        "import subprocess, sys\n"
        "meta, names = sys.argv[1], sys.argv[2:]\n"
        "for n in names:\n"
        "    r = subprocess.run([sys.executable, '-m', 'blockmap.cli', 'put', '--meta', meta, n, '/'],"
        " capture_output=True, text=True)\n"
        "    print(n, r.returncode, r.stderr.strip().replace(chr(10), ' | '), flush=True)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, meta, *[str(tmp_path / f"w{w}-f{i}.bin") for i in range(FILES_EACH)]],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(WRITERS)
    ]
    acknowledged: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=DEADLINE)  # a hung writer fails the test here
        assert p.returncode == 0, err
        for line in out.splitlines():
            name, code, stderr = line.split(" ", 2)
            if code == "0":
                acknowledged.append(Path(name).name)
            else:  # a clean failure: one line naming the problem, no traceback
                assert "Traceback" not in stderr and " | " not in stderr, stderr
    assert acknowledged, "no put succeeded"
    with Volume.open(meta) as vol:
        for name in acknowledged:
            assert vol.read_file(f"/{name}") == sources[name]
        report = vol.fsck()
        assert report.ok, report
