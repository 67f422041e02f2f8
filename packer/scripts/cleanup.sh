#!/bin/bash
# Last provisioner: leave nothing of the build behind in the image.
set -euo pipefail

# The build user's keys (packer's temporary key pair) and root's, if any.
rm -f /home/ec2-user/.ssh/authorized_keys /root/.ssh/authorized_keys
# Host keys are regenerated at first boot, so no two instances share one.
rm -f /etc/ssh/ssh_host_*
# cloud-init runs again (user data, instance id) on every instance launched from the image.
cloud-init clean --logs --seed
# An empty machine-id makes systemd create a new one at first boot: journald, DHCP client
# ids and the journal's per-machine directory differ per instance, not per image.
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /root/.bash_history /home/ec2-user/.bash_history
journalctl --rotate >/dev/null
journalctl --vacuum-time=1s >/dev/null
