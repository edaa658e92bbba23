"""Fault scenarios on real servers and processes: see docs/reliability.md."""
