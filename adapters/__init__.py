"""Sans-IO protocol adapters: bytes and the receive time in; canonical events or precise errors out.

Nothing here opens a socket, touches the database or reads the clock; transports in `gateway/`
do that and hand the bytes over. The contract: docs/architecture.md, Invariants and Layout.
"""
