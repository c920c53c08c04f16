"""The glue runtime shipped into run pods (simfleet_glue.py: one self-contained file, stdlib + pyzmq)."""
