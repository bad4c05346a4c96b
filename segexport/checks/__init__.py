"""Runners, parity metrics, latency measurement and report writers."""
