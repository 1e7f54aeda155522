#!/usr/bin/env bash
# Builds the real servers the e2e tests run, from pinned module versions
# through the Go module proxy (release downloads are not reachable here),
# into bin/:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#   kubectl                                           (hack/kube, one go build)
#   etcd                                              (hack/etcd)
#   consul v1.13.9, vault v1.13.0                     (hack/consul, hack/vault)
#   containerd v2.4.2, containerd-shim-runc-v2, ctr,
#   runc v1.5.3, CNI bridge, host-local, loopback     (hack/containerd, hack/runc,
#                                                      hack/cni: group node)
# runc needs cgo and libseccomp: when Debian's libseccomp-dev is missing and
# this runs as root, it is installed with apt-get (and the script says so).
# Idempotent: a stamp file per group records the pinned version and the
# hash of its go.sum; a group whose stamp matches is not built again. The Go
# build cache makes a rebuild after a pin change quick for unchanged packages.
# Cold, the Kubernetes group takes 19 to 28 minutes on 2 cores beside the
# rest of make test's first step (.ci/run, measured twice).
#
# Usage: hack/build-servers.sh [etcd] [kube] [consul] [vault] [node]
#        (default: all five)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
mkdir -p "$bin"

kube_version=v1.37.2
# Fixed so that the link step is reproducible and cached.
build_date=2026-11-01T00:00:00Z
# The binaries are stripped (-s -w), so the compiler need not write the
# DWARF that the linker throws away: about 13% less CPU (etcd's build: 101 s
# user CPU with it, 87 s without). Stack traces keep their symbols.
nodwarf=-gcflags=all=-dwarf=false

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
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
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
  log "kube: building ${bins[*]} $kube_version (cold: 20 minutes or more on 2 cores)..."
  local start=$SECONDS
  (cd "$root/hack/kube" && CGO_ENABLED=0 go build -trimpath $nodwarf -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
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
  (cd "$root/hack/$group" && CGO_ENABLED=0 go build -trimpath $nodwarf -ldflags "-s -w" -o "$bin/$binary" .) \
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

# build_node builds the node's runtime: containerd (with its runc shim and
# ctr), runc (cgo, with libseccomp) and the CNI plugins.
build_node() {
  local bins=(containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/host-local cni/loopback)
  local sum
  sum=$(cat "$root"/hack/{containerd,runc,cni}/go.{mod,sum} | sha256sum | cut -c1-16)
  local present=yes
  for b in "${bins[@]}"; do [[ -x $bin/$b ]] || present=; done
  if [[ -n $present && -f $bin/.stamp-node && "$(cat "$bin/.stamp-node")" == "node $sum" ]]; then
    log "node: ${bins[*]} up to date in bin/"
    return
  fi
  if ! dpkg -s libseccomp-dev >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "runc needs Debian's libseccomp-dev: apt-get install libseccomp-dev (as root)"
    log "node: installing Debian's libseccomp-dev with apt-get (runc links libseccomp)..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev >/dev/null 2>&1 || \
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev >/dev/null 2>&1; } || \
      die "apt-get install libseccomp-dev"
  fi
  log "node: building containerd v2.4.2, runc v1.5.3 and the CNI plugins (cold: about 4 minutes on 2 cores)..."
  local start=$SECONDS
  mkdir -p "$bin/cni"
  (cd "$root/hack/containerd" && CGO_ENABLED=0 go build -trimpath $nodwarf -tags 'no_btrfs no_devmapper no_zfs no_aufs' \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v2.4.2" -o "$bin/" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr) || die "go build of containerd in hack/containerd"
  (cd "$root/hack/runc" && CGO_ENABLED=1 go build -trimpath $nodwarf -tags seccomp -ldflags "-X main.version=1.5.3" -o "$bin/runc" \
    github.com/opencontainers/runc) || die "go build of runc in hack/runc"
  (cd "$root/hack/cni" && CGO_ENABLED=0 go build -trimpath $nodwarf -ldflags "-s -w" -o "$bin/cni/" \
    github.com/containernetworking/plugins/plugins/main/bridge \
    github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/loopback) || die "go build of the CNI plugins in hack/cni"
  local out
  out=$("$bin/containerd" --version 2>&1) || die "bin/containerd does not run: $out"
  [[ $out == *v2.4.2* ]] || die "bin/containerd reports '$out', want v2.4.2"
  out=$("$bin/runc" --version 2>&1) || die "bin/runc does not run: $out"
  [[ $out == *libseccomp* ]] || die "bin/runc has no seccomp: $out"
  echo "node $sum" > "$bin/.stamp-node"
  log "node: built in $((SECONDS - start))s: containerd v2.4.2, runc 1.5.3, CNI plugins v1.10.0"
}

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(etcd kube consul vault node)
for g in "${groups[@]}"; do
  case $g in
    kube) build_kube ;;
    etcd) build_module etcd etcd "etcd Version: 3\.7\.0" --version ;;
    consul) build_module consul consul "Consul v1\.13\.9" version ;;
    vault) build_module vault vault "Vault v1\.13\.0" version ;;
    node) build_node ;;
    *) die "unknown group $g (want etcd, kube, consul, vault or node)" ;;
  esac
done
