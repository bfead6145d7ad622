"""Ownership: who owns each reading, and everything that changes it (docs/ownership.md).

- `registry`: devices, credentials and assignments held in memory; `routing`: the rules;
  `assignment`: the shape routing works on; `subjects`: what an assignment stores of a person.
- `lifecycle`: the device state machine at HMC; `registration`: config files and the older
  commands; `specs`: what valid ids and devices are; `operators`: the admin API's tokens.
- `keyring`: the keys ingest holds; `key_management`: generating, registering, rotating.
- `erasure`: crypto-shredding and retention; `audit`: the hash-chained log of every change.
"""
