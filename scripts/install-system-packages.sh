#!/usr/bin/env bash
# Installs the Debian packages meshdcm's tests and benchmarks use, when they are missing.
# Servers in these packages (Orthanc, RabbitMQ) must never start on their own on all interfaces: a policy-rc.d
# that refuses every service start is in place while apt runs; tests and benches start them on loopback or
# inside network namespaces they create. chromium is the headless browser of the web UI's end-to-end tests
# (driven by Playwright with executable_path=/usr/bin/chromium; Playwright's own browser download is not used).
# dcm2niix is not among them: the tests compare against the pinned PyPI wheel in the virtual environment.
set -euo pipefail
packages=(iproute2 nftables rabbitmq-server orthanc orthanc-dicomweb dcmtk chromium)
# Node.js (>= 18: Debian 12 has 18) and npm for the JavaScript package in js/, unless a node is already on PATH
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
  exit 1
fi
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
