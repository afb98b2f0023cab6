"""What a cold `blockmap mount -d` spends before the mount answers: the serving modules load in a
thread while the volume opens, and the command's own process ends without the interpreter's
teardown once the mount process answered (bench/bench_cold_mount.py measures the whole)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from blockmap.mount import SERVING_MODULES, preload

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_main_ends_the_process_at_once_when_a_command_asks_and_flushes_its_output(tmp_path: Path) -> None:
    done = _python("""
        import atexit, sys
        import blockmap.cli as cli
        atexit.register(lambda: print("interpreter teardown ran"))

        @cli.app.command("probe")
        def probe() -> None:
            print("answered")          # buffered: a pipe, not a terminal
            sys.stderr.write("a note\\n")
            cli.end_process_when_done()

        sys.exit(cli.main(["probe"]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answered\n"  # flushed before the process ended...
    assert done.stderr == "a note\n"
    assert "teardown" not in done.stdout  # ...and the teardown (atexit, module cleanup) skipped


def test_a_command_that_does_not_ask_ends_as_usual(tmp_path: Path) -> None:
    done = _python("""
        import atexit, sys
        import blockmap.cli as cli
        atexit.register(lambda: print("interpreter teardown ran"))

        @cli.app.command("probe")
        def probe() -> None:
            print("answered")

        sys.exit(cli.main(["probe"]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answered\ninterpreter teardown ran\n"


def test_preload_imports_modules_in_a_thread_and_leaves_a_failure_to_the_later_import(tmp_path: Path) -> None:
    (tmp_path / "preload_probe_ok.py").write_text("import threading\nLOADED_IN = threading.current_thread().name\n")
    (tmp_path / "preload_probe_bad.py").write_text("raise RuntimeError('broken module')\n")
    (tmp_path / "preload_probe_after.py").write_text("VALUE = 1\n")
    done = _python("""
        import sys
        from blockmap.mount import preload
        preload(("preload_probe_ok", "preload_probe_bad", "preload_probe_after")).join()
        import preload_probe_ok
        print(preload_probe_ok.LOADED_IN)
        print("preload_probe_after" in sys.modules)  # the list stops at the first failure
        try:
            import preload_probe_bad
        except RuntimeError as exc:
            print("raised where used:", exc)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["blockmap-preload", "False", "raised where used: broken module"]


def test_the_serving_modules_preload_without_error() -> None:
    thread = preload(SERVING_MODULES)
    assert isinstance(thread, threading.Thread) and thread.daemon
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert all(name in sys.modules for name in SERVING_MODULES)
