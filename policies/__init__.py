"""simfleet's CrossGuard policy pack: pure rules (rules.py), their pulumi_policy adapters (pack.py)."""
