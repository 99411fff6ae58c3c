#!/usr/bin/env bash
# Build the Dockerfile offline with podman and check the image, then run deploy/compose.yaml.
#
#   bash deploy/check-image.sh [WORKDIR]        (SKIP_COMPOSE=1: the image only)
#
# 1. A base image without a registry: debootstrap the host's Debian release from the host's apt mirror,
#    `podman import` it as localhost/debian-base.
# 2. `podman build` the Dockerfile on it, pip using the host's package index (PIP_INDEX_URL, else
#    pip's own configuration, else PyPI) and the host's CA bundle (both build arguments, not kept).
# 3. One container: `wisegate serve` as uid 10001, /health, /ready, a first message from the embedded
#    model, /metrics, and exit status 0 after `podman stop` (SIGTERM, drain).
# 4. deploy/compose.yaml with podman-compose, PostgreSQL, Redis and HAProxy being stand-ins built from
#    Debian's packages on the same base (the compose file's images come from a registry): a message
#    and a count through the load balancer to both API nodes, the shared key, a drained node.
#
# Needs root, podman (with runc), debootstrap, curl; podman-compose for step 4 (all in Debian). The
# llama.cpp compile takes many minutes on a small machine: this is not part of scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/wisegate-image-check}
mkdir -p "$work"
# Sandboxes with low hard rlimits or without cgroup v2: no default ulimits, runc with cgroupfs.
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman=(podman --runtime runc --cgroup-manager=cgroupfs)
step() { printf '\n== %s\n' "$*"; }

step "1. base image localhost/debian-base"
if ! "${podman[@]}" image exists localhost/debian-base; then
  suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
  mirror=${MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
  mirror=${mirror:-http://deb.debian.org/debian}
  rm -rf "$work/rootfs"
  nice -n 19 debootstrap --variant=minbase --include=ca-certificates "$suite" "$work/rootfs" "$mirror" \
    > "$work/debootstrap.log"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then  # the host's suites: -updates, -security
    cp /etc/apt/sources.list.d/debian.sources "$work/rootfs/etc/apt/sources.list.d/"
    rm -f "$work/rootfs/etc/apt/sources.list"
  fi
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | "${podman[@]}" import - localhost/debian-base
fi

step "2. podman build localhost/wisegate"
index=${PIP_INDEX_URL:-$(pip config list 2>/dev/null | sed -n "s/^global\.index-url='\(.*\)'$/\1/p" | head -n1)}
index=${index:-https://pypi.org/simple}
echo "package index: $index"
nice -n 19 "${podman[@]}" build --isolation chroot \
  --build-arg BASE=localhost/debian-base \
  --build-arg PIP_INDEX_URL="$index" \
  --build-arg PIP_CERT=/etc/ssl/host-ca.crt \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro \
  -t localhost/wisegate:latest . > "$work/build.log"
"${podman[@]}" image inspect localhost/wisegate:latest --format 'image {{.Id}} {{.Size}} bytes, user {{.Config.User}}'

step "3. one container"
"${podman[@]}" rm -f wisegate-check >/dev/null 2>&1 || true
port=18080
"${podman[@]}" run -d --name wisegate-check -p "127.0.0.1:$port:8080" localhost/wisegate:latest >/dev/null
trap '"${podman[@]}" rm -f wisegate-check >/dev/null 2>&1 || true' EXIT
for _ in $(seq 180); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 1
done
curl -sS "http://127.0.0.1:$port/health"; echo
curl -sS "http://127.0.0.1:$port/ready"; echo
uid=$("${podman[@]}" exec wisegate-check id -u)
echo "uid in the container: $uid"
[ "$uid" = 10001 ]
key=$("${podman[@]}" logs wisegate-check 2>/dev/null | sed -n 's/^Your first API key (shown once, keep it): //p')
curl -fsS "http://127.0.0.1:$port/v1/messages" -H "x-api-key: $key" -H "content-type: application/json" \
  -d '{"model": "smollm2-135m-instruct", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}'
echo
curl -fsS "http://127.0.0.1:$port/metrics" | grep -c '^wisegate_' | sed 's/^/metric samples: /'
"${podman[@]}" stop -t 40 wisegate-check >/dev/null
code=$("${podman[@]}" inspect wisegate-check --format '{{.State.ExitCode}}')
echo "exit code after SIGTERM: $code"
[ "$code" = 0 ]
"${podman[@]}" rm -f wisegate-check >/dev/null
trap - EXIT
echo "image check passed"

[ "${SKIP_COMPOSE:-}" = 1 ] && exit 0
step "4. deploy/compose.yaml"
# Stand-ins for the registry images the compose file names, from Debian's packages, behaving as those
# images do where the compose file relies on it (POSTGRES_* variables, pg_isready, the config paths).
nice -n 19 "${podman[@]}" build --isolation chroot -t localhost/stand-in-postgres -f - . <<'EOF' > "$work/stand-ins.log"
FROM localhost/debian-base
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
RUN printf '%s\n' '#!/bin/sh' 'set -e' \
  'mkdir -p "$PGDATA" /run/postgresql && chown postgres: "$PGDATA" /run/postgresql && chmod 700 "$PGDATA"' \
  'as() { runuser -u postgres -- "$@"; }' \
  'if [ ! -s "$PGDATA/PG_VERSION" ]; then' \
  '  printf "%s\n" "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw' \
  '  as initdb -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null' \
  '  rm /tmp/pw && echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"' \
  '  as pg_ctl -w -o "-c listen_addresses=" start >/dev/null' \
  '  as createdb -U "$POSTGRES_USER" "$POSTGRES_DB" && as pg_ctl -w -m fast stop >/dev/null' \
  'fi' \
  'exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -c listen_addresses="*"' > /entrypoint && chmod +x /entrypoint
STOPSIGNAL SIGINT
ENTRYPOINT ["/entrypoint"]
EOF
nice -n 19 "${podman[@]}" build --isolation chroot -t localhost/stand-in-redis -f - . <<'EOF' >> "$work/stand-ins.log"
FROM localhost/debian-base
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/bin/sh", "-c", "exec \"$@\" --protected-mode no", "redis"]
CMD ["redis-server"]
EOF
nice -n 19 "${podman[@]}" build --isolation chroot -t localhost/stand-in-haproxy -f - . <<'EOF' >> "$work/stand-ins.log"
FROM localhost/debian-base
RUN apt-get update && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
export POSTGRES_IMAGE=localhost/stand-in-postgres REDIS_IMAGE=localhost/stand-in-redis \
  HAPROXY_IMAGE=localhost/stand-in-haproxy LB_PORT=18081
lb=http://127.0.0.1:$LB_PORT
compose=(podman-compose --podman-args="--runtime runc --cgroup-manager=cgroupfs" -f deploy/compose.yaml)
"${compose[@]}" down -v >/dev/null 2>&1 || true
trap '"${compose[@]}" down -v >/dev/null 2>&1 || true' EXIT
# podman-compose 1.0 starts services in order without waiting for a `depends_on` condition: wait here.
"${compose[@]}" up -d postgres redis > "$work/compose.log" 2>&1
for _ in $(seq 60); do
  "${podman[@]}" exec deploy_postgres_1 pg_isready -q -U wisegate && break
  sleep 1
done
"${compose[@]}" run --rm migrate >> "$work/compose.log" 2>&1
echo "migrate: done"
"${compose[@]}" up -d api-a api-b worker lb >> "$work/compose.log" 2>&1
for _ in $(seq 240); do
  curl -fsS "$lb/ready" >/dev/null 2>&1 && break
  sleep 1
done
curl -sS "$lb/ready"; echo
key=$("${compose[@]}" exec -T api-a wisegate keys create --name check 2>/dev/null | grep -o 'sk-wg-[^[:space:]]*')
for node in api-a api-b; do  # each node answers with the same key (one database)
  "${compose[@]}" exec -T "$node" python3 -c "
import json, sys, urllib.request
request = urllib.request.Request('http://127.0.0.1:8080/v1/messages/count_tokens', headers={
    'x-api-key': sys.argv[1], 'content-type': 'application/json'}, data=json.dumps({
    'model': 'smollm2-135m-instruct', 'messages': [{'role': 'user', 'content': 'Hi'}]}).encode())
print('$node count_tokens:', urllib.request.urlopen(request).read().decode())" "$key" \
    | grep "^$node count_tokens: "  # podman-compose also prints the command it runs
done
curl -fsS "$lb/v1/messages" -H "x-api-key: $key" -H "content-type: application/json" \
  -d '{"model": "smollm2-135m-instruct", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}'
echo
"${podman[@]}" ps --format '{{.Names}} {{.Status}}' --filter name=deploy_
# A drained node: SIGTERM api-a; the load balancer keeps answering through api-b.
"${podman[@]}" stop -t 40 deploy_api-a_1 >/dev/null
echo "api-a exit code after SIGTERM: $("${podman[@]}" inspect deploy_api-a_1 --format '{{.State.ExitCode}}')"
for _ in 1 2 3 4; do
  curl -sS -o /dev/null -w '%{http_code} ' "$lb/v1/messages/count_tokens" \
    -H "x-api-key: $key" -H "content-type: application/json" \
    -d '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}'
done
echo "(through the load balancer with api-a stopped)"
echo "compose check passed"
