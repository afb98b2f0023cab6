"""Results of the cold-boot suite: collected per (replica, scenario, peer), written to
bench/results/ as JSON, a markdown table with the ratios to litestream-vfs, and a PNG plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.peers import LITESTREAM_VFS, LTXVFS, PEERS
from bench.harness.runner import Measurement
from bench.harness.scenarios import DESCRIPTIONS, POINT, SCENARIOS, WARM

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
STEM = "cold_boot"
#: Issue 15's targets for a cold point query (new process to first row), as ratios of ltxvfs to
#: litestream-vfs in the same run, and round trips waited: on a replica that the real Litestream
#: wrote, and on one of ours (with its hint); and the warm repeat.
TARGET_LITESTREAM_RATIO = 0.4
TARGET_LITESTREAM_ROUNDS = 5
TARGET_HINT_RATIO = 0.3
TARGET_HINT_ROUNDS = 3
TARGET_WARM_RATIO = 0.1
#: Bytes fetched by open + cold point query on our replicas, and requests after 3,000 commits.
TARGET_OURS_BYTES = 1_000_000
TARGET_COMMITS_REQUESTS = 40
#: Replica shapes (name prefixes) written by the real Litestream, and by ltxvfs (with a hint).
LITESTREAM_SHAPES = ("litestream",)
OUR_SHAPES = ("snapshot ", "3000 commits")
PEER_COLORS = {"ltxvfs": "tab:blue", "litestream-vfs": "tab:orange", "sqlite-s3vfs": "tab:green",
               "restore": "tab:red"}


@dataclass
class Cell:
    """Every measurement of one peer in one scenario on one replica."""

    replica: str
    scenario: str
    peer: str
    runs: list[Measurement] = field(default_factory=list)

    @property
    def wall_ms(self) -> float:
        return statistics.median(m.wall_s for m in self.runs) * 1000

    @property
    def from_connect_ms(self) -> float:
        return statistics.median(m.from_connect_s for m in self.runs) * 1000

    def _median_run(self) -> Measurement:
        ordered = sorted(self.runs, key=lambda m: m.wall_s)
        return ordered[(len(ordered) - 1) // 2]

    def summary(self) -> dict[str, Any]:
        m = self._median_run()
        return {"replica": self.replica, "scenario": self.scenario, "peer": self.peer,
                "wall_ms": round(self.wall_ms, 5), "from_connect_ms": round(self.from_connect_ms, 5),
                "requests": m.requests, "bytes": m.bytes, "rounds": m.rounds,
                "kinds": m.kinds, "runs": [asdict(r) for r in self.runs]}


class Results:
    """The session's cells, written out at the end."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self.cells: dict[tuple[str, str, str], Cell] = {}

    def add(self, replica: str, scenario: str, peer: str, runs: list[Measurement]) -> Cell:
        cell = Cell(replica, scenario, peer, runs)
        self.cells[(replica, scenario, peer)] = cell
        return cell

    def ratios(self) -> list[dict[str, Any]]:
        """ltxvfs / litestream-vfs (wall time, and time from the open) for every replica and scenario both ran."""
        out = []
        for (replica, scenario, peer), cell in self.cells.items():
            if peer != LTXVFS:
                continue
            peer_cell = self.cells.get((replica, scenario, LITESTREAM_VFS))
            if peer_cell is None:
                continue
            out.append({"replica": replica, "scenario": scenario,
                        "ratio": round(cell.wall_ms / peer_cell.wall_ms, 3),
                        "ratio_from_connect": round(cell.from_connect_ms / max(peer_cell.from_connect_ms, 1e-6), 3)})
        return out

    def targets(self) -> list[dict[str, Any]]:
        """Issue 15's targets, each with the figure measured in this run."""
        out: list[dict[str, Any]] = []

        def add(replica: str, what: str, value: float, limit: float, text: str) -> None:
            out.append({"replica": replica, "target": what, "value": value, "limit": limit, "met": value <= limit,
                        "text": text})

        for r in self.ratios():
            replica, scenario = r["replica"], r["scenario"]
            cell = self.cells[(replica, scenario, LTXVFS)].summary()
            if scenario == WARM:
                add(replica, "warm ratio", r["ratio"], TARGET_WARM_RATIO, f"{r['ratio']:.2f}")
                continue
            if scenario != POINT:
                continue
            if replica.startswith(LITESTREAM_SHAPES):
                add(replica, "point ratio", r["ratio"], TARGET_LITESTREAM_RATIO, f"{r['ratio']:.2f}")
                add(replica, "point round trips", cell["rounds"], TARGET_LITESTREAM_ROUNDS, str(cell["rounds"]))
            if replica.startswith(OUR_SHAPES):
                add(replica, "point ratio", r["ratio"], TARGET_HINT_RATIO, f"{r['ratio']:.2f}")
                add(replica, "point round trips", cell["rounds"], TARGET_HINT_ROUNDS, str(cell["rounds"]))
                add(replica, "point bytes", cell["bytes"], TARGET_OURS_BYTES, f"{cell['bytes'] / 1e6:.2f} MB")
            if replica.startswith("3000 commits"):
                add(replica, "point requests", cell["requests"], TARGET_COMMITS_REQUESTS, str(cell["requests"]))
        return out

    def write(self, directory: Path = RESULTS_DIR) -> list[Path]:
        if not self.cells:
            return []
        directory.mkdir(parents=True, exist_ok=True)
        data = {"context": self.context, "cells": [c.summary() for c in self.cells.values()],
                "ratios": self.ratios(), "targets": self.targets()}
        paths = [directory / f"{STEM}.json", directory / f"{STEM}.md", directory / f"{STEM}.png"]
        paths[0].write_text(json.dumps(data, indent=1) + "\n")
        paths[1].write_text(self.markdown())
        self.plot(paths[2])
        return paths

    def _replicas(self) -> list[str]:
        return list(dict.fromkeys(k[0] for k in self.cells))

    def markdown(self) -> str:
        peers = [p for p in PEERS if any(k[2] == p for k in self.cells)]
        ctx = self.context
        lines = [f"# Cold boot: ltxvfs and its peers ({ctx.get('network', '')})", "",
                 f"{ctx.get('note', '')}", "",
                 "Each cell: median time from the new process's start to the last row / median time from "
                 "the open (`apsw.Connection(...)`; for restore, `litestream restore`) to the last row / requests / "
                 "KB transferred / round trips waited in sequence (the run with the median wall time). Cold "
                 "scenarios run in a new process each time; the warm scenario repeats the point query in an "
                 "open connection (both times are then the repeat's: each timed repeat is a batch of back-to-back "
                 "repeats lasting at least 20 ms, divided by their count, so microseconds are resolved). "
                 "Ratio: ltxvfs / litestream-vfs, from the "
                 "process start (from the open in parentheses).", ""]
        lines.append("| replica | scenario | " + " | ".join(peers) + " | ltxvfs / litestream-vfs |")
        lines.append("|---|---|" + "---|" * len(peers) + "---|")
        ratios = {(r["replica"], r["scenario"]): r for r in self.ratios()}
        for replica in self._replicas():
            for scenario in SCENARIOS:
                if not any((replica, scenario, p) in self.cells for p in peers):
                    continue
                row = [replica, scenario]
                for peer in peers:
                    cell = self.cells.get((replica, scenario, peer))
                    if cell is None:
                        row.append("-")
                        continue
                    s = cell.summary()
                    row.append(f"{_ms(s['wall_ms'])} / {_ms(s['from_connect_ms'])} / {s['requests']} / "
                               f"{s['bytes'] / 1024:,.0f} / {s['rounds']}")
                ratio = ratios.get((replica, scenario))
                row.append("-" if ratio is None else f"{ratio['ratio']:.2f} ({ratio['ratio_from_connect']:.2f})")
                lines.append("| " + " | ".join(row) + " |")
        lines += ["", "## Targets (issue 15), from this run", ""]
        for t in self.targets():
            verdict = "met" if t["met"] else "MISSED"
            lines.append(f"- {t['replica']}: {t['target']} {t['text']} (target <= {t['limit']:,}): {verdict}")
        if ctx.get("notes"):
            lines += ["", "## Notes", ""] + [f"- {n}" for n in ctx["notes"]]
        lines += ["", "Scenarios: " + "; ".join(f"`{k}`: {v}" for k, v in DESCRIPTIONS.items()) + ".", ""]
        for replica, note in ctx.get("replicas", {}).items():
            lines.append(f"- `{replica}`: {note}")
        lines.append("")
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        replicas = self._replicas()
        peers = [p for p in PEERS if any(k[2] == p for k in self.cells)]
        fig, axes = plt.subplots(len(replicas), 1, figsize=(10, 3.2 * len(replicas)), squeeze=False)
        width = 0.8 / max(len(peers), 1)
        for ax, replica in zip(axes[:, 0], replicas, strict=True):
            for i, peer in enumerate(peers):
                xs, ys = [], []
                for j, scenario in enumerate(SCENARIOS):
                    cell = self.cells.get((replica, scenario, peer))
                    if cell is not None:
                        xs.append(j + i * width)
                        ys.append(cell.wall_ms)
                if xs:
                    ax.bar(xs, ys, width, label=peer, color=PEER_COLORS.get(peer))
            ax.set_yscale("log")
            ax.set_ylabel("ms (log)")
            ax.set_title(replica)
            ax.set_xticks([j + width * (len(peers) - 1) / 2 for j in range(len(SCENARIOS))], list(SCENARIOS))
            ax.legend(fontsize=8, ncols=len(peers))
        fig.suptitle(f"Cold boot wall time ({self.context.get('network', '')})")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _ms(value: float) -> str:
    if value < 0.1:
        return f"{value * 1000:.1f} µs"
    if value < 1:
        return f"{value * 1000:.0f} µs"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def load(path: Path) -> Results:
    """Results as written to `path` (the JSON), to render the table and plot again."""
    data = json.loads(path.read_text())
    results = Results(data["context"])
    for c in data["cells"]:
        results.add(c["replica"], c["scenario"], c["peer"], [Measurement(**r) for r in c["runs"]])
    return results


if __name__ == "__main__":
    import sys

    rendered = load(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR / f"{STEM}.json")
    for written in rendered.write():
        print(f"wrote {written}")
