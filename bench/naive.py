"""The poller the exporter is compared with: what a weekend script does.

Every cycle it lists every run (all pages, newest first) and fetches every run's steps, then
recomputes its totals from scratch. It needs no state and is easy to get right; what it asks of
Letta grows with the history, every cycle.
"""

from __future__ import annotations

from collections import Counter

import httpx2

TERMINAL = ("completed", "failed", "cancelled")


def cycle(http: httpx2.Client, page_size: int = 100) -> Counter[str]:
    """One cycle: finished runs by status, and steps and tokens, over all of history."""
    runs: list[dict[str, object]] = []
    params: dict[str, str | int] = {"limit": page_size}
    while True:
        page = http.get("/v1/runs/", params=params).json()
        runs.extend(page)
        if len(page) < page_size:
            break
        params = {"limit": page_size, "before": page[-1]["id"]}
    totals: Counter[str] = Counter()
    for run in runs:
        if run["status"] in TERMINAL:
            totals[f"runs_{run['status']}"] += 1
        for step in http.get(f"/v1/runs/{run['id']}/steps").json():
            totals["steps"] += 1
            totals["input_tokens"] += step.get("prompt_tokens") or 0
            totals["output_tokens"] += step.get("completion_tokens") or 0
    return totals
