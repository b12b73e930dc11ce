"""Reliability tests: outages, bounded shutdown, bad input, threads, secrets and fork."""
