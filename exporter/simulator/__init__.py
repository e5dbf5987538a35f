"""A deterministic, simulated Letta 0.16.8 REST API, quirks included, with its ground truth.

The demo, the unit tests (in-process through `httpx2.MockTransport(sim.handle)`) and the
integration tests and benchmarks (`serve()`, real HTTP on 127.0.0.1) need a Letta that behaves
like the real one where an exporter can go wrong (docs/letta-api.md §1): inverted run cursors,
`GET /v1/steps/` always 400, `total_duration_ns` only in lists, sync runs never `running`, failed
runs with and without a stop reason, a stream cancel leaving its step `pending` forever, an async
cancel later overwritten to `completed`, zombie runs, `stop_reason` set while `status` still
says running, run messages filtered after paging (short and empty pages), tool calls without a
return, and agents renamed under a stable id. `faults` wraps its handler to misbehave (errors,
hangs, damaged answers).

    plan     the runs, planned whole from the seed (tool calls and agent renames too)
    api      routes and JSON as 0.16.8 answers (`SimulatedLetta.handle`)
    query    FastAPI's query validation, error bodies and list paging
    messages a run's messages (`GET /v1/runs/{run_id}/messages`)
    truth    what an exporter should count
    events   behest / agent-sdk event streams (NDJSON lines), with what an exporter should count from them
    server   real HTTP on 127.0.0.1
    faults   fault modes for tests and benchmarks

Every run is planned whole from the seed and what the API shows is a pure function of that plan
and `clock()`, so a fake clock gives exact, sleep-free tests.
"""

from exporter.simulator.api import STEPS_LIST_400, VERSION, SimulatedLetta
from exporter.simulator.plan import OUTCOMES, Scenario
from exporter.simulator.server import SimulatorServer, serve

__all__ = ["OUTCOMES", "STEPS_LIST_400", "VERSION", "Scenario", "SimulatedLetta", "SimulatorServer", "serve"]
