#!/usr/bin/env bash
# Installs what Skein's build, tests and demo need on a fresh Debian/Ubuntu
# machine, and nothing that is already there. Safe to run repeatedly.
#   scripts/deps.sh            apt packages for build, tests and demo
set -euo pipefail

# command -> Debian package
declare -A want=(
	[clang]=clang
	[llvm-strip]=llvm
	[bpftool]=bpftool
	[curl]=curl
	[h2load]=nghttp2-client
	[nghttp]=nghttp2-client
	[ip]=iproute2
	[iptables]=iptables
	[nft]=nftables
	[openssl]=openssl
	[nsenter]=util-linux
	[tshark]=tshark
	[prometheus]=prometheus
	[promtool]=prometheus
	[etcd]=etcd-server
	[nginx]=nginx
	[haproxy]=haproxy
	[wrk]=wrk
)
missing=()
for cmd in "${!want[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${want[$cmd]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts some of these as services on install; tests start their own.
for svc in nginx haproxy prometheus prometheus-node-exporter etcd; do
	systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
