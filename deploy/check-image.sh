#!/usr/bin/env bash
# Build the Dockerfile offline with podman and check the image: the base is made from the apt mirror
# (debootstrap + podman import, no container registry needed), then a container runs `wisegate serve`
# with the embedded model as a non-root user; /health, /ready and a first message are checked, and
# SIGTERM (podman stop) must drain and exit 0. Needs root, podman, runc and debootstrap (Debian).
# The llama.cpp compile makes this a matter of many minutes: it is not part of scripts/test.
#
#   bash deploy/check-image.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/wisegate-image-check}
mkdir -p "$work"
# Sandboxes without cgroup v2 or with low rlimits: no default ulimits, runc with cgroupfs.
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman=(podman --runtime runc --cgroup-manager=cgroupfs)

if ! "${podman[@]}" image exists localhost/debian-bookworm-offline:latest; then
  debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" http://deb.debian.org/debian
  tar -C "$work/rootfs" -c . | "${podman[@]}" import - localhost/debian-bookworm-offline:latest
fi
# PIP_CERT: the host's CA bundle, for a build behind a TLS-inspecting proxy (used by pip, not kept).
"${podman[@]}" build --isolation chroot \
  --build-arg BASE=localhost/debian-bookworm-offline:latest \
  --build-arg PIP_CERT=/etc/ssl/host-ca.crt \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro \
  -t localhost/wisegate:latest .

"${podman[@]}" rm -f wisegate-check >/dev/null 2>&1 || true
port=18080
"${podman[@]}" run -d --name wisegate-check -p "127.0.0.1:$port:8080" localhost/wisegate:latest
trap '"${podman[@]}" rm -f wisegate-check >/dev/null 2>&1 || true' EXIT
for _ in $(seq 180); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/health"; echo
curl -fsS "http://127.0.0.1:$port/ready"; echo
[ "$("${podman[@]}" exec wisegate-check id -u)" = 10001 ] || { echo "not running as uid 10001" >&2; exit 1; }
key=$("${podman[@]}" logs wisegate-check | sed -n 's/^Your first API key (shown once, keep it): //p')
curl -fsS "http://127.0.0.1:$port/v1/messages" -H "x-api-key: $key" -H "content-type: application/json" \
  -d '{"model": "smollm2-135m-instruct", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}'
echo
curl -fsS "http://127.0.0.1:$port/metrics" | grep -c '^wisegate_' | sed 's/^/metric samples: /'
"${podman[@]}" stop -t 40 wisegate-check >/dev/null
code=$("${podman[@]}" inspect wisegate-check --format '{{.State.ExitCode}}')
echo "exit code after SIGTERM: $code"
[ "$code" = 0 ]
echo "image check passed"
