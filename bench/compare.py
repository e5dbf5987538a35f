"""Compare two bench results (bench/FORMAT.md): each figure's change, and which way it went.

    python -m bench.compare bench/results/reference.json bench/results/latest.json

Flags a figure whose change is against its `better` direction by more than --noise (default 10 %),
and warns when the runs are not comparable (format, mode, sizes or machine differ).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import show


def compare(before: dict[str, Any], after: dict[str, Any], noise: float) -> list[str]:
    lines = []
    for key in ("format", "mode", "sizes", "machine"):
        if before.get(key) != after.get(key):
            lines.append(f"warning: {key} differs ({before.get(key)} → {after.get(key)}): not directly comparable")
    lines += ["", "| figure | before | after | change | |", "|---|---|---|---|---|"]
    for key, new in after["figures"].items():
        old = before["figures"].get(key)
        if old is None:
            lines.append(f"| {new['label']} | — | {show(new['value'], new['unit'])} | new | |")
            continue
        change = (new["value"] - old["value"]) / abs(old["value"]) if old["value"] else 0.0
        worse = change < -noise if new["better"] == "higher" else change > noise
        note = "**worse**" if worse else ("better" if abs(change) > noise else "")
        if new["pass"] is False:
            note += " (misses target)"
        lines.append(
            f"| {new['label']} | {show(old['value'], old['unit'])} | {show(new['value'], new['unit'])} "
            f"| {change:+.1%} | {note.strip()} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--noise", type=float, default=0.10, help="relative change taken as noise (default 0.10)")
    args = parser.parse_args()
    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    print("\n".join(compare(before, after, args.noise)))


if __name__ == "__main__":
    main()
