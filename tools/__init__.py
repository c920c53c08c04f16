"""Offline tooling: Pulumi mocks, the offline plan and the benchmark."""
