"""Preflight: read-only checks of the real AWS account before `pulumi up` (quotas, EKS version and add-ons, offerings).

    python -m tools.preflight --stack dev
    python -m tools.preflight --config path/to/Pulumi.mystack.yaml
    python -m tools.preflight --stack dev --allow-placeholders   # check the account before replacing sample CIDRs

The stack file is validated the way `pulumi up` validates it (documentation-range placeholders are errors unless
--allow-placeholders). Then, with the caller's AWS credentials and the stack's `aws:region`, read-only: who the caller
is; the EC2 vCPU quotas every node group draws on at maxSize; whether EKS lists the stack's Kubernetes version in
standard support (and on the date versions.py records); whether each pinned managed add-on build exists and lists that
version as compatible; whether each instance type is offered in the availability zones the network will use.

Prints a table (check, wanted, found, ok) and writes build/preflight/<stack>.json. Exit code 0: no check failed
(warnings do not fail); 1: a check failed; 2: no usable AWS credentials, or the stack file is invalid or sets no
aws:region (one message, no traceback).

One module per concern: `quotas` (the EC2 vCPU quotas the node groups draw on), `eks` (the Kubernetes version and the
managed add-on builds), `offerings` (availability zones and instance type offerings) and `report` (a check, the
report, the table and the JSON file) are pure functions: what to check and how to judge an answer. `aws` holds
`AwsApi`, the only code that calls AWS; `run` asks it every question in table order and judges each answer; `cli` is
the command line. Every call retries throttling in botocore's standard retry mode; a call that still fails (throttled,
access denied, unreachable) fails its own check with the reason, and the other checks still run.
"""
