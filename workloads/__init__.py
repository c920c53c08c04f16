"""Simulation runs: the run spec's Kubernetes rendering, the glue contract and the dynamic provider that applies it."""
