#!/usr/bin/env bash
# Builds Kyverno's admission controller (cmd/kyverno) at a pinned version
# from the Go module proxy into bin/kyverno, for `make bench-peers`; never
# part of `make test`. Kyverno's go.mod has a replace directive, which Go
# honours only in the main module: the module's source is copied out of the
# module cache and built as the main module. A long build (28 minutes on 2
# cores at low priority beside other work); done once, then reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v1.19.1
BIN=$PWD/bin
OUT=$PWD/_output/peers
if [[ -x $BIN/kyverno && -f $OUT/kyverno.version && $(cat "$OUT/kyverno.version") == "$VERSION" ]]; then
  echo "bin/kyverno $VERSION is built"; exit 0
fi
mkdir -p "$OUT" "$BIN"
dir=$(go mod download -json "github.com/kyverno/kyverno@$VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d $dir ]] || { echo "go mod download did not give Kyverno's source" >&2; exit 1; }
rm -rf "$OUT/kyverno-src"
cp -r "$dir" "$OUT/kyverno-src"
chmod -R u+w "$OUT/kyverno-src"
(cd "$OUT/kyverno-src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$BIN/kyverno" ./cmd/kyverno)
rm -rf "$OUT/kyverno-src/.git"
echo "$VERSION" > "$OUT/kyverno.version"
echo "built bin/kyverno $VERSION"
