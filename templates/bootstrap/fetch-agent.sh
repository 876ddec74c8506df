#!/bin/bash
# Installs the keelson node agent that /etc/keelson/env names: fetched from the
# state store with the instance's IAM role (IMDSv2 credentials, a request signed
# by curl itself), and installed only if its SHA-256 is the one the user-data
# carries. Run by keelson-bootstrap.service before each start, so that systemd
# retries it; a no-op once the right binary is in place.
set -euo pipefail

# shellcheck source=/dev/null
. /etc/keelson/env
BIN=/usr/local/bin/keelson

log() { echo "keelson-fetch: $*" >&2; }

if [ -x "$BIN" ] && echo "$KEELSON_AGENT_SHA256  $BIN" | sha256sum -c --status; then
  exit 0
fi
if [ -z "$KEELSON_STATE_BUCKET" ]; then
  log "the cluster's state store is not on S3, so this instance cannot fetch its agent; use an s3:// state store for clusters that run"
  exit 1
fi

imds() {
  local token
  token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
    http://169.254.169.254/latest/api/token)
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/$1"
}

json_field() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

region=$(imds meta-data/placement/region)
# S3 names a bucket's region in a header, even to anonymous requests. Path-style
# URLs throughout: a bucket name with dots breaks TLS on virtual-hosted ones.
bucket_region=$(curl -sSI "https://s3.amazonaws.com/$KEELSON_STATE_BUCKET" |
  tr -d '\r' | awk -F': ' 'tolower($1) == "x-amz-bucket-region" { print $2 }')
bucket_region=${bucket_region:-$region}
url="https://s3.$bucket_region.amazonaws.com/$KEELSON_STATE_BUCKET/$KEELSON_AGENT_KEY"

tmp=$(mktemp /usr/local/bin/.keelson.XXXXXX)
trap 'rm -f "$tmp"' EXIT
role=$(imds meta-data/iam/security-credentials/)
creds=$(imds "meta-data/iam/security-credentials/$role")
# The credentials go through a config on stdin, never on a command line.
printf 'user = "%s:%s"\nheader = "x-amz-security-token: %s"\n' \
  "$(json_field AccessKeyId <<<"$creds")" \
  "$(json_field SecretAccessKey <<<"$creds")" \
  "$(json_field Token <<<"$creds")" |
  curl -fsS -K - --aws-sigv4 "aws:amz:$bucket_region:s3" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -o "$tmp" "$url"
if ! echo "$KEELSON_AGENT_SHA256  $tmp" | sha256sum -c --status; then
  log "$KEELSON_AGENT_KEY does not have the SHA-256 the user-data names; not installing it"
  exit 1
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$BIN"
log "installed the node agent $KEELSON_AGENT_SHA256"
