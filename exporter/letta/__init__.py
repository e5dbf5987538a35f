"""The Letta source: the REST client, Letta's records read into the shared model, and the poller."""

from exporter.letta.client import LettaClient, LettaError
from exporter.letta.poller import LettaPoller, LettaSettings

__all__ = ["LettaClient", "LettaError", "LettaPoller", "LettaSettings"]
