"""Runs pushed as events by agent runtimes without a REST API (behest, agent-sdk): docs/event-sources.md."""
