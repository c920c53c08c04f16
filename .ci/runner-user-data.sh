#!/usr/bin/env bash
# The deploy runner's boot script (EC2 user data on Amazon Linux 2023): install what a deploy job needs, register a
# just-in-time GitHub Actions runner for ONE job, run it, then power off (after a failed set-up too). The instance's
# shutdown behaviour is `terminate` and an Auto Scaling group of one replaces it (docs/operators.md, "First deploy"),
# so every job starts on a fresh machine and nothing of one deploy (its checkout, ~/.pulumi, caches) is there for the
# next.
#
# The user data that docs/operators.md builds sets these first:
#   SIMFLEET_STACK    dev or prod: the runner's name and label (simfleet-<stack>)
#   GITHUB_ORG        the organization that owns the repository and the runner group
#   RUNNER_GROUP_ID   the id of the runner group that only .github/workflows/deploy.yml on main may use
#   TOKEN_PARAMETER   the SSM SecureString holding a token allowed to register organization runners
#   AWS_REGION        the stack's region
set -euo pipefail

: "${SIMFLEET_STACK:?}" "${GITHUB_ORG:?}" "${RUNNER_GROUP_ID:?}" "${TOKEN_PARAMETER:?}" "${AWS_REGION:?}"

# A set-up that fails (a package mirror, GitHub's API, the token, the archive's digest) leaves an instance that never
# takes a job, which the Auto Scaling group sees as healthy and never replaces: deploys would wait for a runner that
# never comes. So it powers off too, after a pause that keeps a lasting failure (a revoked token) from replacing
# instances in a tight loop and leaves time to read the console output.
FAILURE_DELAY_MINUTES="${FAILURE_DELAY_MINUTES:-10}"
job_started=false
on_exit() {
  local status=$?
  if [ "$job_started" = false ]; then
    echo "simfleet runner: set-up failed (exit $status); powering off in $FAILURE_DELAY_MINUTES minutes for a fresh instance" >&2
    shutdown -h "+$FAILURE_DELAY_MINUTES"
  fi
}
trap on_exit EXIT

# actions/runner v2.337.0, actions-runner-linux-x64-2.337.0.tar.gz; SHA-256 as published with the release (the same
# digest in three independent public pins, checked 2026-12-07). GitHub refuses jobs to runners that fall too far
# behind: bump both together.
RUNNER_VERSION="${RUNNER_VERSION:-2.337.0}"
RUNNER_SHA256="${RUNNER_SHA256:-70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613}"
RUNNER_HOME="${RUNNER_HOME:-/opt/actions-runner}"
RUNNER_USER="${RUNNER_USER:-runner}"
GITHUB_API="${GITHUB_API:-https://api.github.com}"
GITHUB_DOWNLOADS="${GITHUB_DOWNLOADS:-https://github.com/actions/runner/releases/download}"

# git (checkout), make and Python 3.11 (`make venv`; AL2023's python3 is 3.9, too old for the pinned requirements, and
# the Makefile picks python3.11 by name), jq (the docs' commands), tar and gzip (the runner's archive), and libicu,
# which the runner's .NET runtime needs on Linux; iptables for the rule below. The AWS CLI v2 (the kubeconfig's
# `aws eks get-token`) is in the AMI.
dnf install -y git make python3.11 jq tar gzip libicu iptables-nft

id "$RUNNER_USER" >/dev/null 2>&1 || useradd --create-home "$RUNNER_USER"
mkdir -p "$RUNNER_HOME"
archive="$(mktemp)"
curl -fsSL --retry 3 -o "$archive" "$GITHUB_DOWNLOADS/v$RUNNER_VERSION/actions-runner-linux-x64-$RUNNER_VERSION.tar.gz"
echo "$RUNNER_SHA256  $archive" | sha256sum -c -
tar -xzf "$archive" -C "$RUNNER_HOME"
rm -f "$archive"
chown -R "$RUNNER_USER:" "$RUNNER_HOME"

# A just-in-time configuration (REST: POST /orgs/{org}/actions/runners/generate-jitconfig): usable once, for one
# runner in the given group, which GitHub removes after its one job. The registration token stays in this script.
token="$(aws ssm get-parameter --region "$AWS_REGION" --name "$TOKEN_PARAMETER" --with-decryption \
  --query Parameter.Value --output text)"
request="$(jq -n --arg name "simfleet-$SIMFLEET_STACK-$(hostname -s)" --arg runner_label "simfleet-$SIMFLEET_STACK" \
  --argjson group "$RUNNER_GROUP_ID" '{name: $name, runner_group_id: $group, labels: [$runner_label], work_folder: "_work"}')"
jit="$(curl -fsS --retry 3 -X POST "$GITHUB_API/orgs/$GITHUB_ORG/actions/runners/generate-jitconfig" \
  -H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28" \
  -H @<(printf 'Authorization: Bearer %s\n' "$token") --data "$request" | jq -er .encoded_jit_config)"
unset token

# The job gets its AWS credentials from GitHub's OIDC token (the deploy role), never from this instance's role, which
# can read the registration token: the runner user may not reach the instance metadata service at all.
iptables -I OUTPUT -m owner --uid-owner "$RUNNER_USER" -d 169.254.169.254 -j REJECT

# One job, as the unprivileged runner user with a clean environment. Whatever it ends with, the machine goes.
job_started=true
status=0
sudo -u "$RUNNER_USER" env -i HOME="/home/$RUNNER_USER" PATH=/usr/local/bin:/usr/bin:/bin \
  "$RUNNER_HOME/run.sh" --jitconfig "$jit" || status=$?
echo "simfleet runner: the job ended (run.sh exit $status); powering off for a fresh instance"
shutdown -h now
