#!/bin/bash
# keelson bootstrap of a bastion, run once by cloud-init. A bastion only forwards
# SSH to the cluster's private instances (ProxyJump, a direct-tcpip channel):
# keys only, no root login, no agent, X11, socket or remote forwarding.
set -euo pipefail

# KEELSON_ROOT is for tests only: the file system root the files go under.
root=${KEELSON_ROOT:-}

# sshd uses the first value it reads for each keyword, and Ubuntu's
# sshd_config includes sshd_config.d/*.conf in order before its own lines: an
# early name wins over cloud-init's 50-cloud-init.conf.
install -d -m 0755 "$root/etc/ssh/sshd_config.d"
cat >"$root/etc/ssh/sshd_config.d/01-keelson-bastion.conf" <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding local
AllowStreamLocalForwarding no
PermitTunnel no
SSHD

# Validate before reloading: a broken config must not lock everyone out. With
# socket activation (Ubuntu 24.04's ssh.socket) ssh.service, which makes sshd's
# privilege separation directory, may not have run yet; sshd -t needs it.
install -d -m 0755 "$root/run/sshd"
sshd -t

# Debian and Ubuntu name the unit ssh, others sshd. A running daemon reloads.
# Socket-activated and not started yet, there is nothing to reload: the first
# connection starts sshd, which reads the new config then.
reloaded=""
for unit in ssh.service sshd.service; do
  if systemctl is-active --quiet "$unit"; then
    systemctl reload "$unit"
    reloaded=$unit
    break
  fi
done
if [ -z "$reloaded" ]; then
  if systemctl is-active --quiet ssh.socket || systemctl is-active --quiet sshd.socket; then
    echo "keelson-bootstrap: sshd is socket-activated; the next connection reads the new config" >&2
  else
    # Neither running nor listening: start it, or no one can reach the bastion.
    systemctl start ssh.service 2>/dev/null || systemctl start sshd.service
  fi
fi
echo "keelson-bootstrap: bastion ready" >&2
