"""Tamper-evident audit log (DESIGN §4.7): records, hash chain, checkpoints, verify, export."""
