#!/bin/sh
# export-journal [JOURNALCTL_OPTION...]
# Copies the sqs-poller units' journal lines (one JSON object each) to
# $LOGS_DIRECTORY/journal.log for the CloudWatch agent, resuming after the last line it
# copied ($STATE_DIRECTORY/cursor) whenever it restarts.
#
# journalctl 252, Amazon Linux 2023's, never writes --cursor-file when --follow is ended
# by a signal (systemd#26746, fixed in 254): every restart re-sent the whole boot. So this
# reads what is new, lets journalctl exit by itself (which writes the cursor), and sleeps.
set -eu
: "${STATE_DIRECTORY:?run me from sqs-poller-journal-export.service}"
: "${LOGS_DIRECTORY:?run me from sqs-poller-journal-export.service}"
interval=${EXPORT_INTERVAL_SECONDS:-5}
cursor="$STATE_DIRECTORY/cursor"
output="$LOGS_DIRECTORY/journal.log"

while :; do
    # Lines match SyslogIdentifier=sqs-poller (set by the units); no match is not an error.
    journalctl "$@" --quiet --no-pager --output=cat --identifier=sqs-poller \
        --cursor-file="$cursor" >>"$output"
    sleep "$interval"
done
