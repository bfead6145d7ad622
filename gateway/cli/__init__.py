"""The `gateway` command: main.py adds one Typer app per area (service, registry, devices,
assignments, keys, erasure, audit, alarms, deliveries, arc, operators, node); common.py holds
the console and the database they share; options.py the options several commands take."""
