#!/usr/bin/env bash
# Tools the deployment checks need (`make deploy-tools`; `make test` runs it):
#   - packer, Debian's package, for `packer fmt -check` and `packer validate`
#   - systemd-analyze, for `verify` and `security --offline` of the units
#   - systemd-journal-remote, to write journal files the exporter's cursor test reads
#   - python3-seccomp (for Debian's /usr/bin/python3), to run the daemon inside the
#     unit's system call filter without systemd as PID 1
#   - tmux, a real terminal for the test of `sqs-poller top`; util-linux's setpriv, to run
#     the CLI as another user in the test of the control socket's permissions
#   - checkov, pinned, in its own virtualenv .venv-checkov (it pins boto3 and friends
#     to versions the daemon's .venv must not get)
#   - the AWS provider's schema for the lowest and highest provider versions
#     terraform/versions.tf allows, from npm's @cdktf/provider-aws (generated from that
#     schema), made small by scripts/provider_schema.py into .cache/provider-schema/
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CHECKOV_VERSION=3.3.30
CHECKOV_VENV=.venv-checkov

apt_packages=()
command -v packer >/dev/null 2>&1 || apt_packages+=(packer)
command -v systemd-analyze >/dev/null 2>&1 || apt_packages+=(systemd)
[ -x /lib/systemd/systemd-journal-remote ] || apt_packages+=(systemd-journal-remote)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
/usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || apt_packages+=(python3-seccomp)
command -v tmux >/dev/null 2>&1 || apt_packages+=(tmux)
command -v setpriv >/dev/null 2>&1 || apt_packages+=(util-linux)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${apt_packages[*]} with apt-get" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

marker="$CHECKOV_VENV/.installed-checkov-$CHECKOV_VERSION"
if [ ! -f "$marker" ] || [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    echo "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV" >&2
    rm -rf "$CHECKOV_VENV"
    "$PYTHON" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION"
    touch "$marker"
fi

# AWS provider version -> the @cdktf/provider-aws release generated from its schema.
SCHEMA_DIR=.cache/provider-schema
declare -A CDKTF_FOR_AWS=([5.85.0]=19.51.0 [6.25.0]=21.22.1)
mkdir -p "$SCHEMA_DIR"
# A changed converter makes every cached schema stale.
converter=$(sha256sum scripts/provider_schema.py | cut -c1-16)
for aws in "${!CDKTF_FOR_AWS[@]}"; do
    target="$SCHEMA_DIR/aws-$aws.json"
    [ -s "$target" ] && [ "$(cat "$target.converter" 2>/dev/null)" = "$converter" ] && continue
    echo "fetching the AWS provider $aws schema (@cdktf/provider-aws@${CDKTF_FOR_AWS[$aws]})" >&2
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "@cdktf/provider-aws@${CDKTF_FOR_AWS[$aws]}" >/dev/null)
    tar -xzf "$work"/cdktf-provider-aws-*.tgz -C "$work" package/.jsii
    "$PYTHON" scripts/provider_schema.py "$work/package/.jsii" "$target.tmp"
    mv "$target.tmp" "$target"
    echo "$converter" >"$target.converter"
    rm -rf "$work"
done
