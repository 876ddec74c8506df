#!/bin/bash
# keelson bootstrap of a bastion, run once by cloud-init. A bastion only forwards
# SSH to the cluster's private instances: keys only, no root login, no forwarding
# of anything but TCP for SSH's own use.
set -euo pipefail

install -d -m 0755 /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/90-keelson-bastion.conf <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
X11Forwarding no
AllowAgentForwarding yes
AllowTcpForwarding yes
SSHD
# Validate before reloading: a broken config must not lock everyone out.
sshd -t
systemctl reload ssh 2>/dev/null || systemctl reload sshd
echo "keelson-bootstrap: bastion ready" >&2
