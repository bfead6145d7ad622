"""TLS for the gateway's outgoing connections: to its MQTT broker, to alarm centres and to
huvudman brokers."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca_file: Path | None, cert_file: Path | None = None,
                   key_file: Path | None = None) -> ssl.SSLContext:
    """The receiver's certificate and host name verified, against `ca_file` or the system's
    CAs, TLS 1.2 at least; our own certificate offered when given. OSError or ssl.SSLError
    when a file will not do."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context
