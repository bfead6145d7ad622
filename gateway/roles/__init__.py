"""The roles of docs/architecture.md as running processes. `ingest`: transports, pipeline,
delivery and supervision in one process (`gateway serve`). The huvudman node runs from
gateway/node/server.py (`gateway node`)."""
