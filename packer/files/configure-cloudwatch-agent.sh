#!/bin/bash
# configure-cloudwatch-agent LOG_GROUP METRICS_LOG_GROUP NAMESPACE
# Fills the AMI's CloudWatch agent template with one deployment's names (user data calls
# this at first boot) and (re)starts the agent with it.
set -euo pipefail

TEMPLATE=${TEMPLATE:-/opt/sqs-poller/share/amazon-cloudwatch-agent.json}
OUTPUT=${OUTPUT:-/opt/aws/amazon-cloudwatch-agent/etc/sqs-poller.json}
AGENT_CTL=${AGENT_CTL:-/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl}

if [ "$#" -ne 3 ]; then
    echo "usage: $0 LOG_GROUP METRICS_LOG_GROUP NAMESPACE" >&2
    exit 2
fi

# Only characters CloudWatch allows in these names, and none that sed or JSON treat specially.
for value in "$@"; do
    if ! [[ "$value" =~ ^[A-Za-z0-9_./#-]{1,255}$ ]]; then
        echo "refusing name '$value': use letters, digits and _ . / # -" >&2
        exit 2
    fi
done

tmp=$(mktemp "$OUTPUT.XXXXXX")
sed -e "s|@LOG_GROUP@|$1|g" -e "s|@METRICS_LOG_GROUP@|$2|g" -e "s|@NAMESPACE@|$3|g" \
    "$TEMPLATE" >"$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$OUTPUT"

"$AGENT_CTL" -a fetch-config -m ec2 -s -c "file:$OUTPUT"
