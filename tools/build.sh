#!/usr/bin/env bash
# Builds kubetensor's pinned tool binaries from the Go module proxy, once per version.
#
# Called by `make tools` (and so by `make test` / `make run`). Each binary lands in
#   ${KT_CACHE:-~/.cache/kubetensor}/bin/<name>-<version>/<name>
# and a later run that finds it there (and answering its version) skips the build.
# Versions come from tools/versions.env, the single place they are written.
# Usage: tools/build.sh [tool ...]   (default: all of them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
. "$here/versions.env"
cache=${KT_CACHE:-$HOME/.cache/kubetensor}
bindir=$cache/bin
mkdir -p "$bindir"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { log "Go >= 1.26 is needed to build the pinned tools (none on PATH)"; exit 1; }
have() { [ -x "$bindir/$1-$2/$1" ]; }
# Run a build step and stamp its wall time, so CI logs show where the cold minutes went.
timed() { local t0=$SECONDS; "$@"; log "$1 took $((SECONDS - t0))s"; }

build_kubernetes() {
  local v=$KUBERNETES_VERSION out=$bindir/kubernetes-$KUBERNETES_VERSION
  if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/kube-scheduler" ] \
     && [ -x "$out/kube-controller-manager" ]; then return; fi
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $v (cold: 15-30 min on 2 cores)"
  local bd minor ldf p
  bd=$(date -u +%Y-%m-%dT%H:%M:%SZ); minor=${v#v1.}; minor=${minor%%.*}
  ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$bd"
  done
  mkdir -p "$out.tmp"
  (cd "$here/go/k8s" && go build -p 2 -tags=selinux,notest,grpcnotrace -ldflags="$ldf" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  "$out.tmp/kube-apiserver" --version | grep -q "Kubernetes $v" || { log "kube-apiserver reports the wrong version"; exit 1; }
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  have etcd "$ETCD_VERSION" && return
  log "building etcd $ETCD_VERSION"
  local out=$bindir/etcd-$ETCD_VERSION
  mkdir -p "$out"
  (cd "$here/go/etcd" && go build -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
      -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.tmp" "$out/etcd"
}

# go install into a private GOBIN, then move the binary into its versioned folder.
go_install() {
  local name=$1 version=$2 pkg=$3; shift 3
  have "$name" "$version" && return
  log "building $name $version"
  local out=$bindir/$name-$version gobin
  gobin=$(mktemp -d)
  GOBIN=$gobin go install "$@" "$pkg@$version"
  mkdir -p "$out" && mv "$gobin/$name" "$out/$name" && rm -rf "$gobin"
}

build_kwok() { go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok; }
build_nats_server() { go_install nats-server "$NATS_SERVER_VERSION" github.com/nats-io/nats-server/v2; }
build_helm() {
  local v=$HELM_VERSION m=$HELM_K8S_MINOR ldf
  ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldf="$ldf -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$m"
  ldf="$ldf -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$m"
  go_install helm "$v" helm.sh/helm/v3/cmd/helm -ldflags "$ldf"
}

# Jaeger v2 through a tools module (tools/go/jaeger): upstream's go.mod has a replace, so `go install
# .../cmd/jaeger@v1.76.0` fails; the module copies that replace and pins every dependency in go.sum.
build_jaeger() {
  have jaeger "$JAEGER_VERSION" && return
  log "building jaeger $JAEGER_V2_VERSION (module $JAEGER_VERSION; cold: 10-20 min on 2 cores)"
  local out=$bindir/jaeger-$JAEGER_VERSION
  mkdir -p "$out"
  (cd "$here/go/jaeger" && go build -ldflags \
      "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_V2_VERSION" \
      -o "$out/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$out/jaeger.tmp" "$out/jaeger"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(nats-server etcd kwok helm jaeger kubernetes)
for t in "${tools[@]}"; do
  case $t in
    kubernetes) timed build_kubernetes ;;
    etcd) timed build_etcd ;;
    kwok) timed build_kwok ;;
    helm) timed build_helm ;;
    nats-server) timed build_nats_server ;;
    jaeger) timed build_jaeger ;;
    *) log "unknown tool '$t' (known: kubernetes etcd kwok helm nats-server jaeger)"; exit 2 ;;
  esac
done
log "tools ready in $bindir"
