"""simfleet's CrossGuard policy pack: pure rules (rules/, one module per concern), their pulumi_policy adapters (pack.py)."""
