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
#: The targets of issue 8, as ratios of ltxvfs to litestream-vfs in the same run.
TARGET_FIRST_ROW_RATIO = 0.6
TARGET_WARM_RATIO = 1.0
TARGET_SNAPSHOT_POINT_REQUESTS = 6
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

    def _median_run(self) -> Measurement:
        ordered = sorted(self.runs, key=lambda m: m.wall_s)
        return ordered[(len(ordered) - 1) // 2]

    def summary(self) -> dict[str, Any]:
        m = self._median_run()
        return {"replica": self.replica, "scenario": self.scenario, "peer": self.peer,
                "wall_ms": round(self.wall_ms, 2), "requests": m.requests, "bytes": m.bytes, "rounds": m.rounds,
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
        """ltxvfs / litestream-vfs wall time for every replica and scenario both ran."""
        out = []
        for (replica, scenario, peer), cell in self.cells.items():
            if peer != LTXVFS:
                continue
            peer_cell = self.cells.get((replica, scenario, LITESTREAM_VFS))
            if peer_cell is None:
                continue
            target = TARGET_WARM_RATIO if scenario == WARM else TARGET_FIRST_ROW_RATIO if scenario == POINT else None
            ratio = cell.wall_ms / peer_cell.wall_ms
            out.append({"replica": replica, "scenario": scenario, "ratio": round(ratio, 3), "target": target,
                        "met": None if target is None else ratio <= target})
        return out

    def write(self, directory: Path = RESULTS_DIR) -> list[Path]:
        if not self.cells:
            return []
        directory.mkdir(parents=True, exist_ok=True)
        data = {"context": self.context, "cells": [c.summary() for c in self.cells.values()],
                "ratios": self.ratios()}
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
                 "Each cell: median wall time / requests / KB transferred / round trips waited in sequence. "
                 "Cold scenarios run in a new process each time (wall time from the spawn to the last row); "
                 "the warm scenario repeats the point query in an open connection.", ""]
        lines.append("| replica | scenario | " + " | ".join(peers) + " | ltxvfs / litestream-vfs |")
        lines.append("|---|---|" + "---|" * len(peers) + "---|")
        for replica in self._replicas():
            for scenario in SCENARIOS:
                row = [replica, scenario]
                for peer in peers:
                    cell = self.cells.get((replica, scenario, peer))
                    if cell is None:
                        row.append("-")
                        continue
                    s = cell.summary()
                    row.append(f"{_ms(s['wall_ms'])} / {s['requests']} / {s['bytes'] / 1024:,.0f} / {s['rounds']}")
                ratio = next((r for r in self.ratios() if r["replica"] == replica and r["scenario"] == scenario), None)
                row.append("-" if ratio is None else f"{ratio['ratio']:.2f}" +
                           ("" if ratio["met"] is None else (" (target met)" if ratio["met"] else " (target missed)")))
                lines.append("| " + " | ".join(row) + " |")
        lines += ["", "## Targets (issue 8), ratios from this run", ""]
        for r in self.ratios():
            if r["target"] is not None:
                verdict = "met" if r["met"] else "MISSED"
                lines.append(f"- {r['replica']}, `{r['scenario']}`: ltxvfs / litestream-vfs = {r['ratio']:.2f} "
                             f"(target <= {r['target']}): {verdict}")
        for (replica, scenario, peer), cell in self.cells.items():
            if peer == LTXVFS and scenario == POINT and replica.startswith("snapshot ") and "L0" not in replica:
                peer_cell = self.cells.get((replica, scenario, LITESTREAM_VFS))
                theirs = f" (litestream-vfs: {peer_cell.summary()['requests']})" if peer_cell else ""
                n = cell.summary()["requests"]
                verdict = "met" if n <= TARGET_SNAPSHOT_POINT_REQUESTS else "MISSED"
                lines.append(f"- {replica}: open + cold point query = {n} requests{theirs} "
                             f"(target <= {TARGET_SNAPSHOT_POINT_REQUESTS}): {verdict}")
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
