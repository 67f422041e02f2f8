#!/bin/bash
# Runs as root on the build instance (Amazon Linux 2023). Everything it needs was
# uploaded to /tmp/sqs-poller by the file provisioners.
set -euo pipefail
shopt -s nullglob

SRC=/tmp/sqs-poller
PREFIX=/opt/sqs-poller
VENV=$PREFIX/venv

# Security updates of the base image's own release.
dnf -y -q upgrade
dnf -y -q install python3.11 python3.11-pip amazon-cloudwatch-agent logrotate

wheels=("$SRC"/dist/sqs_poller-*.whl)
if [ "${#wheels[@]}" -ne 1 ]; then
    echo "expected exactly one sqs-poller wheel in $SRC/dist, found ${#wheels[@]}" >&2
    exit 1
fi

# The daemon's own virtualenv: the system Python stays untouched, and every dependency
# version comes from constraints.txt, so two builds of one commit install the same code.
install -d -m 0755 "$PREFIX" "$PREFIX/bin" "$PREFIX/share" "$PREFIX/share/doc"
python3.11 -m venv "$VENV"
# shellcheck disable=SC2086  # EXTRA_REQUIREMENTS is a space-separated list on purpose
"$VENV/bin/python" -m pip install --quiet --no-cache-dir --only-binary=:all: \
    --index-url "${PIP_INDEX_URL:-https://pypi.org/simple}" \
    --constraint "$SRC/files/constraints.txt" \
    "${wheels[0]}" ${EXTRA_REQUIREMENTS:-}
# ProtectSystem=strict makes /opt read-only at run time: compile the bytecode now.
"$VENV/bin/python" -m compileall -q "$VENV" >/dev/null
"$VENV/bin/sqs-poller" --help >/dev/null

# systemd units, checked by this machine's own systemd.
install -m 0644 "$SRC/systemd/sqs-poller@.service" /etc/systemd/system/
install -m 0644 "$SRC/systemd/sqs-poller-journal-export.service" /etc/systemd/system/
install -m 0644 "$SRC/systemd/sqs-poller-unhealthy@.service" /etc/systemd/system/
install -m 0755 "$SRC/files/export-journal.sh" "$PREFIX/bin/export-journal"
# verify only warns; show its findings in the build log (CI already fails on any).
systemd-analyze verify /etc/systemd/system/sqs-poller@example.service \
    /etc/systemd/system/sqs-poller-journal-export.service \
    /etc/systemd/system/sqs-poller-unhealthy@example.service
systemctl daemon-reload
systemctl enable sqs-poller-journal-export.service
# Instances start with `systemctl enable --now sqs-poller@<name>` from user data.

# An example config; the unit needs /etc/sqs-poller/<name>.toml, so this one never runs.
install -d -m 0755 /etc/sqs-poller
install -m 0644 "$SRC/files/poller.toml.example" /etc/sqs-poller/poller.toml.example

# CloudWatch agent: the template and the script user data calls with the log group names.
install -m 0644 "$SRC/files/amazon-cloudwatch-agent.json" "$PREFIX/share/amazon-cloudwatch-agent.json"
install -m 0644 "$SRC/files/prometheus.yaml" "$PREFIX/share/prometheus.yaml"
install -m 0755 "$SRC/files/configure-cloudwatch-agent.sh" "$PREFIX/bin/configure-cloudwatch-agent"
install -m 0644 "$SRC/files/logrotate-sqs-poller" /etc/logrotate.d/sqs-poller
install -m 0644 "$SRC/doc/operations.md" "$PREFIX/share/doc/operations.md"

dnf clean all
rm -rf "$SRC"
