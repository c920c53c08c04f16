"""Pure renderers: a workload's spec and its context -> the Kubernetes objects to apply (one module per kind)."""
