#!/bin/bash
# keelson bootstrap of a Kubernetes master or node (Ubuntu), run once by cloud-init.
#
# Everything instance-specific comes from /etc/keelson/env, written by the user-data.
# No secret is in the user-data: the cluster's keys and the join token are fetched
# here from the state store with the instance's IAM role, which may read exactly
# those objects. Requests are signed by curl itself (--aws-sigv4), so the image needs
# no AWS CLI.
set -euo pipefail

# shellcheck source=/dev/null
. /etc/keelson/env

PKI=/etc/kubernetes/pki
WORK=/etc/keelson
ADMIN_CONF=/etc/kubernetes/admin.conf

log() { echo "keelson-bootstrap: $*" >&2; }

# Instance metadata through IMDSv2 (the launch template requires tokens).
imds() {
  local token
  token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
    http://169.254.169.254/latest/api/token)
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/$1"
}

json_field() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# curl with this instance's role credentials and a SigV4 signature for SERVICE in
# REGION. The credentials go through a config on stdin, never on a command line.
aws_curl() {
  local service=$1 region=$2 role creds
  shift 2
  role=$(imds meta-data/iam/security-credentials/)
  creds=$(imds "meta-data/iam/security-credentials/$role")
  printf 'user = "%s:%s"\nheader = "x-amz-security-token: %s"\n' \
    "$(json_field AccessKeyId <<<"$creds")" \
    "$(json_field SecretAccessKey <<<"$creds")" \
    "$(json_field Token <<<"$creds")" |
    curl -sS -K - --aws-sigv4 "aws:amz:$region:$service" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

bucket_region() {
  # S3 names a bucket's region in a header, even to anonymous requests.
  local r
  r=$(curl -sSI "https://$KEELSON_STATE_BUCKET.s3.amazonaws.com/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-amz-bucket-region" { print $2 }')
  echo "${r:-$REGION}"
}

object_url() {
  echo "https://$KEELSON_STATE_BUCKET.s3.$BUCKET_REGION.amazonaws.com/$KEELSON_STATE_PREFIX$1"
}

# s3_get KEY FILE: one of this cluster's state-store objects, retried while the
# bucket or the role's permissions propagate.
s3_get() {
  local i
  install -d -m 0700 "$(dirname "$2")"
  for i in $(seq 1 60); do
    if aws_curl s3 "$BUCKET_REGION" -f -o "$2" "$(object_url "$1")"; then
      return 0
    fi
    log "cannot read $1 from the state store yet (attempt $i); retrying"
    sleep 10
  done
  log "giving up on $1"
  return 1
}

# The API's host: api.NAME with DNS, else the load balancer's own name (gossip).
api_host() {
  if [ -n "$KEELSON_API_NAME" ]; then
    echo "$KEELSON_API_NAME"
    return 0
  fi
  local i name
  for i in $(seq 1 60); do
    name=$(aws_curl elasticloadbalancing "$REGION" -f \
      "https://elasticloadbalancing.$REGION.amazonaws.com/?Action=DescribeLoadBalancers&Version=2015-12-01&Names.member.1=$KEELSON_API_LOAD_BALANCER" |
      sed -n 's:.*<DNSName>\(.*\)</DNSName>.*:\1:p' | head -n 1) || true
    if [ -n "$name" ]; then
      echo "$name"
      return 0
    fi
    log "load balancer $KEELSON_API_LOAD_BALANCER not found yet (attempt $i)"
    sleep 10
  done
  return 1
}

prepare_host() {
  printf 'overlay\nbr_netfilter\n' >/etc/modules-load.d/keelson.conf
  modprobe overlay
  modprobe br_netfilter
  cat >/etc/sysctl.d/90-keelson.conf <<'SYSCTL'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
SYSCTL
  sysctl --system >/dev/null
  swapoff -a
}

install_packages() {
  local minor=${KEELSON_KUBERNETES_VERSION%.*}
  local pin="$KEELSON_KUBERNETES_VERSION-1.1"
  local repo="https://pkgs.k8s.io/core:/stable:/v$minor/deb/"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q apt-transport-https ca-certificates curl gpg containerd
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL "${repo}Release.key" |
    gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] $repo /" \
    >/etc/apt/sources.list.d/kubernetes.list
  apt-get update -q
  # Pinned to the spec's version and held: upgrades go through keelson.
  apt-get install -y -q "kubelet=$pin" "kubeadm=$pin" "kubectl=$pin"
  apt-mark hold kubelet kubeadm kubectl containerd
  install -d -m 0755 /etc/containerd
  containerd config default >/etc/containerd/config.toml
  # kubelet uses the systemd cgroup driver; containerd must match.
  sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
  systemctl restart containerd
  systemctl enable kubelet
}

fetch_material() {
  s3_get secrets/node-bootstrap-token "$WORK/token"
  chmod 0600 "$WORK/token"
  s3_get pki/public/ca.crt "$PKI/ca.crt"
  if [ "$KEELSON_ROLE" = master ]; then
    # The shared CAs and service-account key, where kubeadm looks for them, so
    # that every master issues its own certificates from the same CAs.
    s3_get pki/private/ca.key "$PKI/ca.key"
    s3_get pki/public/front-proxy-ca.crt "$PKI/front-proxy-ca.crt"
    s3_get pki/private/front-proxy-ca.key "$PKI/front-proxy-ca.key"
    s3_get pki/public/etcd-ca.crt "$PKI/etcd/ca.crt"
    s3_get pki/private/etcd-ca.key "$PKI/etcd/ca.key"
    s3_get pki/public/sa.pub "$PKI/sa.pub"
    s3_get pki/private/sa.key "$PKI/sa.key"
    chmod 0600 "$PKI"/*.key "$PKI"/etcd/*.key
  fi
}

ca_cert_hash() {
  echo "sha256:$(openssl x509 -pubkey -noout -in "$PKI/ca.crt" |
    openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1)"
}

# The nodeRegistration block of the kubeadm configuration.
node_registration() {
  local labels="keelson.dev/role=$KEELSON_ROLE,keelson.dev/instance-group=$KEELSON_INSTANCE_GROUP"
  if [ -n "$KEELSON_NODE_LABELS" ]; then
    labels="$labels,$KEELSON_NODE_LABELS"
  fi
  cat <<YAML
nodeRegistration:
  name: "$NODE_NAME"
  kubeletExtraArgs:
    - name: cloud-provider
      value: external
    - name: node-labels
      value: "$labels"
YAML
  if [ -n "$KEELSON_TAINTS" ]; then
    echo "  taints:"
    local t key_value effect
    for t in ${KEELSON_TAINTS//,/ }; do
      key_value=${t%:*}
      effect=${t##*:}
      echo "    - key: \"${key_value%%=*}\""
      if [ "$key_value" != "${key_value%%=*}" ]; then
        echo "      value: \"${key_value#*=}\""
      fi
      echo "      effect: \"$effect\""
    done
  fi
}

write_init_config() {
  cat >"$WORK/kubeadm.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: "$(cat "$WORK/token")"
    ttl: "0s"
    usages: [signing, authentication]
    groups: ["system:bootstrappers:kubeadm:default-node-token"]
localAPIEndpoint:
  bindPort: 443
$(node_registration)
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: "$KEELSON_CLUSTER"
kubernetesVersion: "v$KEELSON_KUBERNETES_VERSION"
controlPlaneEndpoint: "$API_HOST:443"
networking:
  podSubnet: "$KEELSON_POD_CIDR"
  serviceSubnet: "$KEELSON_SERVICE_CIDR"
apiServer:
  certSANs: ["$API_HOST"]
controllerManager:
  extraArgs:
    - name: cloud-provider
      value: external
YAML
  chmod 0600 "$WORK/kubeadm.yaml"
}

write_join_config() {
  cat >"$WORK/kubeadm.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "$API_HOST:443"
    token: "$(cat "$WORK/token")"
    caCertHashes: ["$(ca_cert_hash)"]
$(node_registration)
YAML
  if [ "$KEELSON_ROLE" = master ]; then
    printf 'controlPlane:\n  localAPIEndpoint:\n    bindPort: 443\n' >>"$WORK/kubeadm.yaml"
  fi
  chmod 0600 "$WORK/kubeadm.yaml"
}

# Exactly one master runs `kubeadm init`: the one whose conditional write of
# control-plane/leader wins (S3 If-None-Match). A master that restarts its
# bootstrap finds its own id there and stays the leader.
is_leader() {
  local code
  while true; do
    code=$(aws_curl s3 "$BUCKET_REGION" -o /dev/null -w '%{http_code}' -X PUT \
      -H 'If-None-Match: *' --data-binary "$INSTANCE_ID" "$(object_url control-plane/leader)") || true
    case $code in
      200) return 0 ;;
      412 | 409)
        s3_get control-plane/leader "$WORK/leader"
        [ "$(cat "$WORK/leader")" = "$INSTANCE_ID" ]
        return
        ;;
      *)
        log "claiming control-plane/leader answered HTTP $code; retrying"
        sleep 10
        ;;
    esac
  done
}

wait_for_api() {
  local i
  for i in $(seq 1 180); do
    if curl -ksf -o /dev/null "https://$API_HOST:443/readyz"; then
      return 0
    fi
    if [ $((i % 6)) -eq 0 ]; then
      log "waiting for the API at $API_HOST:443"
    fi
    sleep 10
  done
  log "the API at $API_HOST:443 did not become ready"
  return 1
}

# The addons the cluster cannot live without, in the channel's order.
apply_channel() {
  local manifest file
  s3_get addons/bootstrap-channel.yaml "$WORK/addons/bootstrap-channel.yaml"
  sed -n 's/^ *manifest: *//p' "$WORK/addons/bootstrap-channel.yaml" | while read -r manifest; do
    file="$WORK/addons/$manifest"
    s3_get "addons/$manifest" "$file"
    until kubectl --kubeconfig "$ADMIN_CONF" apply --server-side --force-conflicts -f "$file"; do
      log "applying $manifest failed; retrying"
      sleep 10
    done
  done
}

main() {
  if [ -z "$KEELSON_STATE_BUCKET" ]; then
    log "the cluster's state store is not on S3, so this instance cannot fetch its keys; use an s3:// state store for clusters that run"
    exit 1
  fi
  REGION=$(imds meta-data/placement/region)
  INSTANCE_ID=$(imds meta-data/instance-id)
  # The AWS cloud provider expects nodes named by their private DNS name.
  NODE_NAME=$(imds meta-data/local-hostname)
  BUCKET_REGION=$(bucket_region)
  install -d -m 0700 "$WORK" "$PKI" "$PKI/etcd"

  prepare_host
  install_packages
  fetch_material
  API_HOST=$(api_host)

  if [ "$KEELSON_ROLE" = master ] && is_leader; then
    log "this master initialises the control plane"
    write_init_config
    kubeadm init --config "$WORK/kubeadm.yaml"
    apply_channel
  else
    wait_for_api
    write_join_config
    kubeadm join --config "$WORK/kubeadm.yaml"
  fi
  rm -f "$WORK/token"
  log "done"
}

main "$@"
