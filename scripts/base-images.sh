#!/usr/bin/env bash
# Make sure the two base images named in .env (or the official defaults) exist; with the
# argument `monitoring`, also Prometheus' and nginx's exporter's (make monitoring).
#
# With a registry: the official images are pulled and nothing else happens.
# Without one (air-gapped hosts, CI, this project's own machines): the images are
# built here from Debian packages with debootstrap + `docker import`, and .env is
# pointed at them so that plain `docker-compose up -d` uses them too.
set -euo pipefail
cd "$(dirname "$0")/.."

official_python=python:3.13-slim
official_nginx=nginx:1.30
local_python=gateway-base/python:3.13-trixie
local_nginx=gateway-base/nginx:1.30-sid
official_prometheus=prom/prometheus:v3.5.0
official_exporter=nginx/nginx-prometheus-exporter:1.4.2
local_prometheus=gateway-base/prometheus:3.5-sid
local_exporter=gateway-base/nginx-exporter:1.5-sid
debian_mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
host_ca_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

setting() {  # value of $1 from the environment, then .env, then $2
  local from_env=${!1:-}
  if [[ -z $from_env && -f .env ]]; then
    from_env=$(sed -n "s/^$1=//p" .env | tail -n 1)
  fi
  echo "${from_env:-$2}"
}

set_setting() {  # write $1=$2 into .env, keeping every other line
  touch .env
  if grep -q "^$1=" .env; then
    sed -i "s|^$1=.*|$1=$2|" .env
  else
    echo "$1=$2" >>.env
  fi
}

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

debootstrap_import() {  # $1 image, $2 suite, $3 packages, rest: docker import -c changes
  # (a command in $rootfs_setup runs with the root filesystem's folder as its argument)
  local image=$1 suite=$2 packages=$3; shift 3
  command -v debootstrap >/dev/null || as_root apt-get install -y -q debootstrap
  rootfs=$(mktemp -d)
  trap 'as_root rm -rf "$rootfs"' EXIT
  echo "base-images: building $image from Debian $suite (debootstrap, about a minute)"
  as_root debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$debian_mirror" >/dev/null
  # Smaller image: no apt lists, docs or man pages.
  as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  # A host whose TLS is intercepted needs its own CA bundle inside too (pip, PIP_CERT),
  # in the images that have one (with ca-certificates).
  if [[ -f $host_ca_bundle && -d $rootfs/etc/ssl/certs ]]; then
    as_root cp "$host_ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  if [[ -n ${rootfs_setup:-} ]]; then $rootfs_setup "$rootfs"; fi
  local changes=()
  for change in "$@"; do changes+=(-c "$change"); done
  as_root tar -C "$rootfs" -c . | docker import "${changes[@]}" - "$image" >/dev/null
  as_root rm -rf "$rootfs"
}

ensure() {  # $1 setting name, $2 official image, $3 local image, $4 builder function
  local wanted
  wanted=$(setting "$1" "$2")
  if have_image "$wanted"; then
    echo "base-images: $1=$wanted is here"
    return
  fi
  if [[ $wanted == "$2" ]] && docker pull -q "$wanted" >/dev/null 2>&1; then
    echo "base-images: pulled $wanted"
    return
  fi
  if [[ $wanted != "$2" && $wanted != "$3" ]]; then
    echo "base-images: $1=$wanted is neither on this host nor pullable" >&2
    exit 1
  fi
  echo "base-images: no registry for $2; using $3 built from Debian packages"
  have_image "$3" || "$4"
  set_setting "$1" "$3"
}

build_python() {
  debootstrap_import "$local_python" trixie python3,python3-venv,ca-certificates \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV LANG=C.UTF-8' \
    'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    'CMD ["python3"]'
}

build_nginx() {
  # nginx >= 1.27.3 is needed for `server ... resolve`; Debian sid carries 1.30.
  debootstrap_import "$local_nginx" sid nginx-light,gettext-base,curl,ca-certificates \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["nginx", "-g", "daemon off;"]'
}

prometheus_data_folder() {  # the official image's storage folder, owned by nobody
  as_root install -d -o 65534 -g 65534 "$1/prometheus"
}

build_prometheus() {
  # Debian's binaries under the official image's paths: /bin is /usr/bin in sid, and the
  # official image's user (nobody) and working directory (/prometheus) are kept.
  rootfs_setup=prometheus_data_folder debootstrap_import "$local_prometheus" sid prometheus \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'USER 65534:65534' \
    'WORKDIR /prometheus' \
    'ENTRYPOINT ["/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
}

build_exporter() {
  # Debian names the binary prometheus-nginx-exporter (upstream: nginx-prometheus-exporter);
  # as the entry point, the compose file's arguments work for either image.
  debootstrap_import "$local_exporter" sid prometheus-nginx-exporter \
    'USER 65534:65534' \
    'ENTRYPOINT ["/usr/bin/prometheus-nginx-exporter"]'
}

ensure PYTHON_IMAGE "$official_python" "$local_python" build_python
ensure NGINX_IMAGE "$official_nginx" "$local_nginx" build_nginx
if [[ ${1:-} == monitoring ]]; then
  ensure PROMETHEUS_IMAGE "$official_prometheus" "$local_prometheus" build_prometheus
  ensure NGINX_EXPORTER_IMAGE "$official_exporter" "$local_exporter" build_exporter
fi
