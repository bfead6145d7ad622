"""Ingest: what every transport does with a device's bytes, up to the commit.

- `decoding`: one message through its adapter, with the uploader's rights checked.
- `formats`: which adapter reads which payload format.
- `sealing`: route each event by the assignments at measurement time, seal one copy per owner.
- `pipeline`: group commit, the alarm lane, and the commit listeners (`Stage`).
- `dose_alarms`, `supervision`: alarms ingest raises itself (missed doses; silent devices and
  low batteries).
"""
