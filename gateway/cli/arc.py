"""`gateway arc`: alarm centres as the sinks file configures them (docs/delivery.md).

`check` sends each configured centre address a heartbeat with its transport, TLS and Digest
settings, and shows what came back: what an operator runs before telling a centre the gateway is
ready, and after changing a certificate or a password. `did` prints the `did` a centre should
register for a device whose alarms it will receive. Installed by gateway/cli/main.py.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import common
from gateway.delivery.arc import configure, ping
from gateway.delivery.arc_config import ArcSpec
from gateway.delivery.scaip_alarm import did_for
from gateway.delivery.scaip_client import Answer, ScaipClient
from gateway.delivery.sink_config import SinkConfigError, arc_password, read_arcs
from gateway.observability import logs
from gateway.settings import Settings

app = typer.Typer(name="arc", no_args_is_help=True,
                  help="Alarm centres (the arc entries of the sinks file): check them, "
                       "device ids.")


@app.command("check")
def arc_check(
    receiver: Annotated[str | None, typer.Argument(help="Only this alarm route")] = None,
) -> None:
    """Send each configured centre address a heartbeat and show its answer."""
    settings = Settings()
    logs.configure("console")  # connection and certificate failures are logged, by class
    try:
        specs = read_arcs(settings.sinks_file)
        passwords = {r: p for r, spec in specs.items()
                     if (p := arc_password(settings.sinks_file, r, spec))}
    except SinkConfigError as err:
        common.fail(str(err), 2)
    if receiver is not None:
        if receiver not in specs:
            common.fail(f"{receiver} is not an [[arc]] in {settings.sinks_file}", 2)
        specs = {receiver: specs[receiver]}
    if not specs:
        common.console.print(f"no [[arc]] entries in {settings.sinks_file}", markup=False)
        return
    results = asyncio.run(_check(settings, specs, passwords))
    table = Table("receiver", "centre", "address", "answer", "ms")
    for row in results:
        table.add_row(*row)
    common.console.print(table)
    if any(not row[3].startswith("ok") for row in results):
        raise typer.Exit(1)


async def _check(settings: Settings, specs: dict[str, ArcSpec],
                 passwords: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    client = configure(ScaipClient(settings.arc_sip_host, 0), specs.values(), passwords)
    await client.start()
    try:
        rows = []
        for name, spec in specs.items():
            for which, address in spec.targets:
                ref, mrq = ping(spec)
                answer = await client.request(address, mrq, ref,
                                              timeout_s=spec.answer_timeout_s)
                rows.append((name, which, str(address), _said(answer),
                             f"{answer.elapsed_s * 1000:.0f}"))
        return rows
    finally:
        await client.stop()


def _said(answer: Answer) -> str:
    if answer.mrs is not None:
        hbi = f", asks for a heartbeat every {answer.mrs.hbi} min" if answer.mrs.hbi else ""
        return ("ok" if answer.mrs.snu == 0 else f"refused (snu {answer.mrs.snu})") + hbi
    if answer.sip_status is not None and answer.sip_status >= 300:
        return f"SIP {answer.sip_status}" + (" (credentials refused or missing)"
                                              if answer.sip_status in (401, 407) else "")
    if answer.failure is not None:
        return f"not sent: {answer.failure}"
    return "no answer"


@app.command("did")
def arc_did(device: Annotated[str, typer.Argument(help="The gateway's device id")]) -> None:
    """The `did` under which a centre receives this device's alarms (the id itself when it
    fits SCAIP's 16 printable characters, else a stable digest)."""
    common.console.print(did_for(device), markup=False)
