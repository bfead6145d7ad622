"""The HTTP transport (FastAPI).

- `app`: the application: routers, `/healthz`, `/readyz`, `/metrics`.
- `common`: what every device endpoint shares (credentials, answers, counting, one way in).
- `native`: the gateway's own JSON; `standards`: PCD-01, PHD FHIR, Open mHealth, vendor JSON.
- `lifecycle_api`: the admin API under /admin/v1 (docs/lifecycle.md); `body`: size limits.
"""
