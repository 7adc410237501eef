"""Loopback stand-ins for the internet, shared by tests, benchmarks and the demo."""
