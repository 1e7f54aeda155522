#!/usr/bin/env bash
# Builds the real servers the e2e tests run, from pinned module versions
# through the Go module proxy (release downloads are not reachable here),
# into bin/:
#   kube-apiserver, kube-controller-manager, kubectl   (hack/kube, one go build)
#   etcd                                              (hack/etcd)
#   consul v1.13.9, vault v1.13.0                     (hack/consul, hack/vault)
# Idempotent: a stamp file per group records the pinned version and the
# hash of its go.sum; a group whose stamp matches is not built again. The Go
# build cache makes a rebuild after a pin change quick for unchanged packages.
# Cold, the Kubernetes group takes about 10 to 15 minutes on 2 cores.
#
# Usage: hack/build-servers.sh [etcd] [kube] [consul] [vault]
#        (default: all four)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
mkdir -p "$bin"

kube_version=v1.37.2
# Fixed so that the link step is reproducible and cached.
build_date=2026-11-01T00:00:00Z

log() { printf 'build-servers: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

stamp_of() { # group dir
  printf '%s %s\n' "$1" "$(sha256sum "$root/hack/$2/go.sum" "$root/hack/$2/go.mod" | sha256sum | cut -c1-16)"
}

up_to_date() { # group dir binaries...
  local group=$1 dir=$2; shift 2
  local stamp="$bin/.stamp-$group"
  [[ -f $stamp && "$(cat "$stamp")" == "$(stamp_of "$group" "$dir")" ]] || return 1
  for b in "$@"; do [[ -x $bin/$b ]] || return 1; done
}

build_kube() {
  local bins=(kube-apiserver kube-controller-manager kubectl)
  if up_to_date kube kube "${bins[@]}"; then
    log "kube: ${bins[*]} $kube_version up to date in bin/"
    return
  fi
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version
  local minor=${kube_version#v1.}; minor=${minor%%.*}
  local ldflags="-s -w"
  for p in $pkg $cgo; do
    ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  log "kube: building ${bins[*]} $kube_version (cold: about 7 minutes on 2 cores)..."
  local start=$SECONDS
  (cd "$root/hack/kube" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl) || die "go build of Kubernetes $kube_version in hack/kube"
  local version
  version=$("$bin/kube-apiserver" --version 2>&1) || die "bin/kube-apiserver does not run: $version"
  [[ $version == "Kubernetes $kube_version" ]] || die "bin/kube-apiserver reports '$version', want Kubernetes $kube_version"
  stamp_of kube kube > "$bin/.stamp-kube"
  log "kube: built in $((SECONDS - start))s: $version"
}

# build_module group binary version-regexp version-args...: go build of
# hack/<group> into bin/<binary>, checked by running it with version-args.
build_module() {
  local group=$1 binary=$2 want=$3; shift 3
  if up_to_date "$group" "$group" "$binary"; then
    log "$group: up to date in bin/"
    return
  fi
  log "$group: building (cold: a few minutes on 2 cores)..."
  local start=$SECONDS
  (cd "$root/hack/$group" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$binary" .) \
    || die "go build of $group in hack/$group"
  # The whole output, then its first line: piping into head would fail
  # under pipefail whenever the binary is killed by SIGPIPE.
  local out version
  out=$("$bin/$binary" "$@" 2>&1) || die "bin/$binary does not run: $out"
  version=${out%%$'\n'*}
  [[ $version =~ $want ]] || die "bin/$binary reports '$version', want $want"
  stamp_of "$group" "$group" > "$bin/.stamp-$group"
  log "$group: built in $((SECONDS - start))s: $version"
}

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(etcd kube consul vault)
for g in "${groups[@]}"; do
  case $g in
    kube) build_kube ;;
    etcd) build_module etcd etcd "etcd Version: 3\.7\.0" --version ;;
    consul) build_module consul consul "Consul v1\.13\.9" version ;;
    vault) build_module vault vault "Vault v1\.13\.0" version ;;
    *) die "unknown group $g (want etcd, kube, consul or vault)" ;;
  esac
done
