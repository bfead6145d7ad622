"""The device simulator: a fleet from a file, physiological values, protocol senders, and
simulated receivers (a kommun webhook, a FHIR server, an alarm centre pair)."""
