"""The `simfleet` command: operate a stack's runs without kubectl (runs, status, logs, artifacts, report, viewport,
cancel). It reads through workloads/observe (the same code as the provider) and owns only presentation."""
