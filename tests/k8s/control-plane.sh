#!/usr/bin/env bash
# tests/k8s/control-plane.sh: a real Kubernetes 1.20 control plane for
# end-to-end tests of the Skiff node agent.
#
# A Kubernetes "control plane" is four programs:
#
#   etcd                     the database; the only place cluster state lives
#   kube-apiserver           the REST front end to etcd: authentication,
#                            authorization, admission, validation, watches
#   kube-controller-manager  control loops that react to what is stored:
#                            service accounts and their tokens, node health
#                            (marks a node NotReady when its heartbeats stop),
#                            pod CIDRs, garbage collection, ...
#   kube-scheduler           picks a node for every pod that has no
#                            spec.nodeName yet and writes the choice back
#
# A node agent (the kubelet, or Skiff's skiff-agent) is not part of it: it
# registers a Node object, renews a Lease as its heartbeat, watches the pods
# bound to its node and runs them.  This script provides everything else, so
# a test can point a node agent at a real API server.
#
# Kubernetes 1.20 is what Debian 12 (bookworm) ships as source: the package
# `kubernetes` builds only kubectl, so this script builds kube-apiserver,
# kube-controller-manager and kube-scheduler from that source with Debian's
# Go 1.19, once, into a cache directory.  etcd comes from Debian's etcd-server
# package and kubectl from kubernetes-client; both are unpacked into the cache
# rather than installed (see fetch_deb_binary for why).
#
# Everything runs in a network namespace of its own, so nothing touches the
# host's network, two instances never fight over a port, and a test attaches
# node network namespaces to a bridge inside it:
#
#   +-- netns skiff-cp-<id> -------------------------------+
#   |  etcd 127.0.0.1:2379    controller-manager, scheduler |
#   |  kube-apiserver 0.0.0.0:6443  (= 127.0.0.1 + bridge)  |
#   |  bridge skiff-br0  10.201.0.1/24                      |
#   +------|----------------------|------------------------+
#          | veth                 | veth      (control-plane.sh attach)
#     netns of node A        netns of node B
#     10.201.0.2/24          10.201.0.3/24, default route via 10.201.0.1
#
# Usage:
#   control-plane.sh build
#       Install missing build tools, fetch the source, build the binaries into
#       the cache (default /var/cache/skiff-k8s, or $SKIFF_K8S_CACHE).
#       A no-op when they are there; concurrent callers wait on a lock.
#   control-plane.sh up DIR
#       Build if needed, then start a control plane with all its state
#       (certificates, etcd data, logs, pids) in DIR.  Returns once the API
#       server is ready and the controller manager has created the `default`
#       service account.  Writes DIR/env (shell-sourceable) and
#       DIR/admin.kubeconfig.
#   control-plane.sh node-kubeconfig DIR NODENAME OUT
#       Write a kubeconfig for a node agent: client certificate
#       CN=system:node:NODENAME, O=system:nodes, signed by the cluster CA.
#   control-plane.sh attach DIR NETNS IP/PREFIX [IFNAME]
#       Connect network namespace NETNS (a name under /run/netns or a path
#       such as /proc/PID/ns/net) to the bridge with a veth pair; the end in
#       NETNS is called IFNAME (default eth0), gets IP/PREFIX (pick one in the
#       bridge's subnet, e.g. 10.201.0.2/24) and a default route via the
#       bridge address.  The node agent then reaches the API server at
#       $APISERVER from DIR/env, and the API server reaches the agent at IP.
#   control-plane.sh kubectl DIR ARGS...
#       Run kubectl as cluster admin inside the namespace.
#   control-plane.sh exec DIR COMMAND...
#       Run any command inside the control plane's network namespace.
#   control-plane.sh down DIR
#       Stop what `up` started (by the PIDs it recorded), delete the network
#       namespace and veths.  Idempotent; keeps DIR (logs) for inspection.
#
# Environment:
#   SKIFF_K8S_CACHE        build cache (default /var/cache/skiff-k8s)
#   SKIFF_K8S_SUBNET       bridge subnet as A.B.C (a /24; default 10.201.0);
#                          the bridge gets A.B.C.1
#   SKIFF_K8S_SERVICE_CIDR service ClusterIPs (default 10.0.0.0/24)
#   SKIFF_K8S_CLUSTER_CIDR if set (e.g. 10.244.0.0/16), the controller manager
#                          hands out a /24 of it to every Node in
#                          spec.podCIDR.  Off by default: it can delay `up`
#                          by 10 s (see the controller manager below).
#   SKIFF_K8S_TIMEOUT      seconds `up` waits for readiness (default 120)
#   SKIFF_K8S_AUDIT        if 1, the API server writes an audit log of every
#                          request made by a node (group system:nodes) to
#                          DIR/logs/audit.log, one JSON line per request
#                          (bench/node.sh counts them)
#
# Must run as root (network namespaces, the cache in /var/cache).

set -euo pipefail

PROG=control-plane.sh
CACHE=${SKIFF_K8S_CACHE:-/var/cache/skiff-k8s}
SUBNET=${SKIFF_K8S_SUBNET:-10.201.0}
SERVICE_CIDR=${SKIFF_K8S_SERVICE_CIDR:-10.0.0.0/24}
CLUSTER_CIDR=${SKIFF_K8S_CLUSTER_CIDR:-}
TIMEOUT=${SKIFF_K8S_TIMEOUT:-120}
AUDIT=${SKIFF_K8S_AUDIT:-0}

# Ports.  They are fixed: every control plane has its own network namespace,
# so "127.0.0.1:2379" of one instance is not that of another, nor the host's.
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
APISERVER_PORT=6443
CONTROLLER_MANAGER_PORT=10257   # their own HTTPS /healthz and /metrics
SCHEDULER_PORT=10259

# The first address of the service CIDR is the ClusterIP of the `kubernetes`
# service in `default`; the API server's certificate must name it, as pods
# reach the API server through that service.  (Nothing here implements
# services, but a node agent may hand the address to pods.)
KUBERNETES_SERVICE_IP=$(awk -F'[./]' '{ print $1"."$2"."$3"."$4+1 }' <<<"$SERVICE_CIDR")

# Versions are passed to the linker: without them the binaries report
# v0.0.0-master and kubectl warns about version skew.
K8S_VERSION=v1.20.2
K8S_MAJOR=1
K8S_MINOR=20

BIN=$CACHE/bin
GO=/usr/lib/go/bin/go   # Debian's Go 1.19, whatever `go` is first in PATH

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------
# build: Debian source -> kube-apiserver, kube-controller-manager,
# kube-scheduler in $CACHE/bin (plus etcd and kubectl unpacked from .debs).
# ---------------------------------------------------------------------------

# The build tools (Go, dpkg-source, the reflect2 fix) are in the project's
# one package list, scripts/packages.txt, installed by its set-up.
install_packages() {
    skiff_prog=$PROG
    # shellcheck source=../../scripts/lib/setup.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/setup.sh"
    skiff_install_packages test || die "cannot install the test packages"
}

# `apt-get source` needs a deb-src entry.  Debian images usually have only
# `deb` entries, so mirror the ones for this release's suites as deb-src, in a
# file of our own.  Third-party repositories are left alone: most publish no
# sources and `apt-get update` would fail on them.
ensure_deb_src() {
    if [[ -n $(apt-cache showsrc kubernetes 2>/dev/null) ]]; then return; fi
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ -n $codename ]] || die "cannot tell the Debian release from /etc/os-release"
    local f out=""
    # deb822 files (Debian 12 default: /etc/apt/sources.list.d/debian.sources)
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f && $f != */skiff-src.sources ]] || continue
        out+=$(awk -v RS= -v ORS='\n\n' -v cn="$codename" '
            # one paragraph per stanza; keep those with Types: deb and a
            # suite of this release, rewritten to deb-src
            /(^|\n)Types:[^\n]*(^|[ \t])deb([ \t]|\n|$)/ &&
            $0 ~ "(^|\n)Suites:[^\n]*[ \t]" cn "([- \t\n]|$)" {
                n = split($0, line, "\n"); s = ""
                for (i = 1; i <= n; i++) {
                    if (line[i] ~ /^Types:/) line[i] = "Types: deb-src"
                    if (line[i] ~ /^#/) continue
                    s = s line[i] "\n"
                }
                print s
            }' "$f")
    done
    if [[ -n $out ]]; then
        printf '%s\n' "$out" >/etc/apt/sources.list.d/skiff-src.sources
    else
        # one-line format: /etc/apt/sources.list and *.list
        local lines
        lines=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v cn="$codename" '$1 == "deb" && $0 ~ "[ \t]" cn "(-[a-z]+)?[ \t]" { $1 = "deb-src"; print }')
        [[ -n $lines ]] || die "no deb entry for $codename found to derive a deb-src entry from"
        printf '%s\n' "$lines" >/etc/apt/sources.list.d/skiff-src.list
    fi
    say "added deb-src entries for $codename (/etc/apt/sources.list.d/skiff-src.*); apt-get update"
    apt-get update -qq >>"$CACHE/apt.log" 2>&1 || { tail -n 20 "$CACHE/apt.log" >&2; die "apt-get update failed"; }
    [[ -n $(apt-cache showsrc kubernetes 2>/dev/null) ]] || die "apt still knows no source package 'kubernetes'"
}

# Unpack one program from a Debian binary package without installing it.
# kubectl: /usr/bin/kubectl may belong to another package (Google's cloud SDK
#   ships one), and kubernetes-client would conflict with it.
# etcd: installing etcd-server enables and starts a system-wide etcd service
#   on systemd hosts, which nothing here needs.
fetch_deb_binary() {  # PACKAGE PATH-IN-PACKAGE DEST
    local tmp
    tmp=$(mktemp -d "$CACHE/deb.XXXXXX")
    (cd "$tmp" && apt-get download -qq "$1") >>"$CACHE/build.log" 2>&1 ||
        { rm -rf "$tmp"; die "apt-get download $1 failed (see $CACHE/build.log)"; }
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    install -m 0755 "$tmp/x$2" "$3"
    rm -rf "$tmp"
}

# The go command in GOPATH mode, as Kubernetes 1.20's own build does
# (hack/lib/golang.sh).  Module mode does not work with this tree: its
# staging/ repositories are only reachable through vendor/ symlinks.
gopath_go() {
    (
        cd "$CACHE/gopath/src/k8s.io/kubernetes"
        env -u GOROOT GOENV=off GO111MODULE=off GOPATH="$CACHE/gopath" GOFLAGS= \
            GOPROXY=off CGO_ENABLED=0 GOCACHE="$CACHE/gocache" "$GO" "$@"
    )
}

# Fetch and unpack the source package, and add what the tarball lacks.
prepare_source() {
    local src=$CACHE/src
    [[ -f $src/.skiff-prepared ]] && return
    rm -rf "$src" "$CACHE/dl"
    mkdir -p "$CACHE/dl"
    say "fetching the Debian source package kubernetes (34 MB)"
    (cd "$CACHE/dl" && apt-get source -qq --download-only kubernetes) >>"$CACHE/build.log" 2>&1 ||
        die "apt-get source kubernetes failed (see $CACHE/build.log)"
    local dsc
    dsc=$(echo "$CACHE"/dl/kubernetes_*.dsc)
    [[ $dsc == *_1.20.* ]] ||
        die "expected Kubernetes 1.20 (Debian 12), got $(basename "$dsc"); this script knows 1.20's flags and fixes"
    # -x also applies debian/patches (kubectl fixes only); --no-copy: do not
    # copy the orig tarball next to the tree.
    dpkg-source --no-copy -x "$dsc" "$src" >>"$CACHE/build.log" 2>&1
    rm -rf "$CACHE/dl"
    mkdir -p "$CACHE/gopath/src/k8s.io"
    ln -sfn "$src" "$CACHE/gopath/src/k8s.io/kubernetes"

    # Fix 1: pkg/generated/openapi/zz_generated.openapi.go is not in the
    # tarball (`make` generates it; Debian only builds kubectl, which does not
    # need it).  It holds the OpenAPI schema of every built-in type and the
    # API server serves it at /openapi/v2; kubectl uses it too.  Do what
    # Makefile.generated_files does: find every package with a
    # `+k8s:openapi-gen=` tag (staging/src/k8s.io/X counts as vendor/k8s.io/X,
    # other vendor/ code does not; code-generator and sample-apiserver are
    # excluded) and run the vendored openapi-gen over them.
    say "generating pkg/generated/openapi (openapi-gen)"
    gopath_go build -o "$CACHE/openapi-gen" k8s.io/kubernetes/vendor/k8s.io/kube-openapi/cmd/openapi-gen \
        >>"$CACHE/build.log" 2>&1 || die "building openapi-gen failed (see $CACHE/build.log)"
    local pkgs
    pkgs=$(cd "$src" &&
        find -H . -not \( \( -path ./_\* -o -path ./.\* -o -path ./vendor \) -prune \) \
            -type f -name '*.go' -print0 |
        xargs -0 grep -l '^// *+k8s:' |
        sed 's|^\./staging/src/|vendor/|; s|^\./||' |
        grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
        xargs grep -l '+k8s:openapi-gen=' |
        xargs -n1 dirname | LC_ALL=C sort -u |
        sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
    (cd "$CACHE/gopath/src/k8s.io/kubernetes" &&
        GOPATH=$CACHE/gopath GO111MODULE=off "$CACHE/openapi-gen" --logtostderr \
            -i "$pkgs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
            -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
            -r "$CACHE/openapi-violations.report") >>"$CACHE/build.log" 2>&1 ||
        die "openapi-gen failed (see $CACHE/build.log)"
    # The generator also reports API-convention violations; upstream's build
    # fails unless they equal the known list, which proves we fed it the same
    # packages as upstream did.
    diff -q "$CACHE/openapi-violations.report" "$src/api/api-rules/violation_exceptions.list" >/dev/null ||
        die "openapi-gen saw other packages than upstream (report differs from api/api-rules/violation_exceptions.list)"
    rm -f "$CACHE/openapi-gen"

    # Fix 2: vendored github.com/modern-go/reflect2 1.0.1 reads Go runtime
    # map internals that changed in Go 1.18; built with Go 1.19 the API server
    # dies ~30 s after start with "fatal error: fault" in
    # UnsafeMapType.UnsafeIterate (json-iterator encoding a map).  1.0.2
    # fixes it and is API-compatible; Debian packages its source.
    [[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] ||
        die "golang-github-modern-go-reflect2-dev is not installed"
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -rL /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"

    touch "$src/.skiff-prepared"
}

compile() {
    local out=$1
    # Same version variables as hack/lib/version.sh sets; buildDate is the
    # Debian changelog's date so that rebuilds are reproducible.
    local date ldflags="-s -w" kv key val pkg
    date=$(date -u -d "@$(dpkg-parsechangelog -l "$CACHE/src/debian/changelog" -STimestamp)" +%Y-%m-%dT%H:%M:%SZ)
    for kv in gitVersion=$K8S_VERSION gitMajor=$K8S_MAJOR gitMinor=$K8S_MINOR \
              gitTreeState=archive buildDate=$date; do
        key=${kv%%=*} val=${kv#*=}
        for pkg in client-go/pkg/version component-base/version; do
            ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/$pkg.$key=$val"
        done
    done
    # -tags: the same as upstream's release build (selinux support compiled
    # in, test-only code out).  One `go build` for all three shares the work
    # on common packages.
    gopath_go build -o "$out/" -tags selinux,notest -ldflags "$ldflags" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler >>"$CACHE/build.log" 2>&1 ||
        { tail -n 30 "$CACHE/build.log" >&2; die "go build failed (log: $CACHE/build.log)"; }
}

cmd_build() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    mkdir -p "$CACHE"
    [[ -f $BIN/.complete ]] && return
    # One builder at a time; the others wait and then find the result.  The
    # lock is a file descriptor held by this subshell only: daemons started
    # later must not inherit it, or the lock would outlive the build.
    (
        if ! flock -n 9; then
            say "waiting for the build another process is running ($CACHE/build.lock)"
            flock 9
        fi
        [[ -f $BIN/.complete ]] && exit 0
        local t0 t1
        t0=$(now)
        if [[ -f $CACHE/src/.skiff-prepared ]]; then
            say "building Kubernetes $K8S_VERSION into $CACHE (source and Go cache present: ~30 s; log: $CACHE/build.log)"
        else
            say "building Kubernetes $K8S_VERSION into $CACHE (from scratch: 5-10 min; log: $CACHE/build.log)"
        fi
        : >"$CACHE/build.log"
        install_packages
        ensure_deb_src
        prepare_source
        rm -rf "$BIN.new"
        mkdir -p "$BIN.new"
        say "compiling kube-apiserver, kube-controller-manager, kube-scheduler"
        t1=$(now)
        compile "$BIN.new"
        say "compiled in $(elapsed "$t1") s"
        fetch_deb_binary etcd-server /usr/bin/etcd "$BIN.new/etcd"
        fetch_deb_binary kubernetes-client /usr/bin/kubectl "$BIN.new/kubectl"
        touch "$BIN.new/.complete"
        rm -rf "$BIN"
        mv "$BIN.new" "$BIN"
        say "build done in $(elapsed "$t0") s: $(cd "$BIN" && echo *)"
    ) 9>>"$CACHE/build.lock"
}

# ---------------------------------------------------------------------------
# Certificates.  Kubernetes authenticates every component and user with TLS
# client certificates signed by one CA (--client-ca-file): the user name is
# the certificate's CN, the groups are its O fields.
# ---------------------------------------------------------------------------

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# ECDSA P-256 keys in PKCS#8 PEM ("BEGIN PRIVATE KEY"): quick to generate,
# and read by Go, OpenSSL and rustls alike.
new_key() { (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null); }

new_ca() {  # PKI-DIR
    local pki=$1
    new_key "$pki/ca.key"
    cat >"$pki/ca.cnf" <<EOF
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -config "$pki/ca.cnf" -extensions v3_ca -key "$pki/ca.key" \
        -subj "/CN=skiff-k8s-ca-$CP_ID" -days 3650 -sha256 -out "$pki/ca.crt" 2>/dev/null
}

# new_cert PKI-DIR NAME SUBJECT client|server [SUBJECT-ALT-NAMES]
new_cert() {
    local pki=$1 name=$2 subj=$3 usage=$4 sans=${5:-}
    new_key "$pki/$name.key"
    openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "extendedKeyUsage = ${usage}Auth"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
        if [[ -n $sans ]]; then echo "subjectAltName = $sans"; fi
    } >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -set_serial "0x$(random_hex 16)" -days 3650 -sha256 \
        -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# A kubeconfig with everything embedded, so it can be copied anywhere.
write_kubeconfig() {  # OUT SERVER USER CERT KEY
    (umask 077 && cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(base64 -w0 "$4")
    client-key-data: $(base64 -w0 "$5")
contexts:
- name: skiff
  context:
    cluster: skiff
    user: $3
current-context: skiff
EOF
    )
}

# ---------------------------------------------------------------------------
# State of one control plane, all in DIR:
#   DIR/state          NETNS=..., CP_ID=..., BRIDGE_IP=... (written first, so
#                      `down` can clean up a half-started instance)
#   DIR/pids           "component pid starttime" per daemon
#   DIR/veths          control-plane-side veth names made by `attach`
#   DIR/pki/           CA, certificates, keys (root-only)
#   DIR/etcd/          etcd data, or /dev/shm/skiff-etcd-CP_ID (ETCD_DATA in
#                      DIR/state) when /dev/shm has room: see etcd_data_dir
#   DIR/logs/*.log     one log per daemon
#   DIR/env            for tests: source it
#   DIR/*.kubeconfig   admin, controller-manager, scheduler
# ---------------------------------------------------------------------------

# Where etcd keeps its data.  etcd fsyncs its write-ahead log on every
# write, and a test bed shares its disk with compilers, image unpacking and
# a VM: one fsync stuck behind that writeback can hold a write (a lease
# renewal, say) for many seconds.  The test bed needs no durability beyond
# its own life, so the data goes to memory (/dev/shm, a tmpfs) when it has
# a GiB to spare; `down` removes it.  Otherwise it stays in DIR/etcd.
etcd_data_dir() {  # DIR CP_ID
    local avail
    avail=$(df --output=avail -k /dev/shm 2>/dev/null | tail -n 1)
    if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs && ${avail:-0} -gt 1048576 ]]; then
        echo "/dev/shm/skiff-etcd-$2"
    else
        echo "$1/etcd"
    fi
}

remove_etcd_data() {  # PATH (only what etcd_data_dir hands out under /dev/shm)
    [[ $1 == /dev/shm/skiff-etcd-* ]] && rm -rf "$1"
    return 0
}

load_state() {  # DIR
    DIR=$(realpath -m "$1")
    PKI=$DIR/pki
    [[ -f $DIR/state ]] || return 1
    # shellcheck disable=SC1091
    . "$DIR/state"
    NETNS_PATH=/run/netns/$NETNS
    APISERVER=https://$BRIDGE_IP:$APISERVER_PORT
}

in_netns() { nsenter --net="$NETNS_PATH" "$@"; }

kubectl_bin() { if [[ -x $BIN/kubectl ]]; then echo "$BIN/kubectl"; else command -v kubectl; fi; }
kube() { in_netns "$(kubectl_bin)" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }

proc_starttime() { awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }

# Is the daemon recorded as "pid starttime" still that very process?  The
# start time guards against a recycled PID.
alive() {
    local st state
    st=$(proc_starttime "$1") || return 1
    [[ -n $st && $st == "$2" ]] || return 1
    state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)
    [[ $state != Z ]]
}

# Start a daemon inside the namespace, detached from our session and with
# only its log file open: a caller reading our stdout through a pipe must see
# EOF when `up` returns.  nsenter and setsid exec rather than fork (we run
# without job control, so the background job is no process-group leader), so
# $! is the daemon's own PID.
# Note: nsenter --net, not `ip netns exec`: the latter also unshares the mount
# namespace and remounts /sys, which is neither needed nor wanted here.
start() {  # NAME BINARY ARGS...
    local name=$1 bin=$2
    shift 2
    nsenter --net="$NETNS_PATH" setsid "$bin" "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 9>&- &
    local pid=$!
    local st=""
    for _ in 1 2 3 4 5 6 7 8 9 10; do st=$(proc_starttime "$pid") && [[ -n $st ]] && break; sleep 0.05; done
    echo "$name $pid $st" >>"$DIR/pids"
}

# Print the end of a component's log, for failures.
show_log() {
    local f=$DIR/logs/$1.log
    [[ -f $f ]] || return 0
    say "---- last lines of $f ----"
    grep -v '\] FLAG: --' "$f" | tail -n 25 >&2   # (not the flag dump of --v=1)
    say "----"
}

# Fail if any daemon died; used while waiting.
check_daemons() {
    local name pid st
    while read -r name pid st; do
        alive "$pid" "$st" || { show_log "$name"; die "$name (pid $pid) exited"; }
    done <"$DIR/pids"
}

# wait_for WHAT COMPONENT COMMAND...: poll COMMAND until it succeeds.
wait_for() {
    local what=$1 component=$2 deadline
    shift 2
    deadline=$(($(date +%s) + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        check_daemons
        if (($(date +%s) > deadline)); then
            show_log "$component"
            die "timed out after ${TIMEOUT}s waiting for $what"
        fi
        sleep 0.2
    done
}

cmd_up() {
    [[ $# == 1 ]] || die "usage: $PROG up DIR"
    [[ $(id -u) == 0 ]] || die "must run as root"
    if load_state "$1" 2>/dev/null && [[ -e $NETNS_PATH ]]; then
        die "$DIR already holds a control plane (netns $NETNS); run '$PROG down $DIR' first"
    fi
    [[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "SKIFF_K8S_SUBNET must look like 10.201.0"

    cmd_build
    local t0
    t0=$(now)

    DIR=$(realpath -m "$1")
    mkdir -p "$DIR"
    rm -rf "$DIR/pki" "$DIR/etcd" "$DIR/logs" "$DIR/pids" "$DIR/veths" "$DIR/env" "$DIR"/*.kubeconfig
    mkdir -p "$DIR/logs"
    : >"$DIR/pids"

    # A crashed earlier instance may have left its etcd data in /dev/shm.
    if [[ -f $DIR/state ]]; then
        remove_etcd_data "$(sed -n 's/^ETCD_DATA=//p' "$DIR/state")"
    fi

    CP_ID=$(random_hex 4)
    cat >"$DIR/state" <<EOF
CP_ID=$CP_ID
ETCD_DATA=$(etcd_data_dir "$DIR" "$CP_ID")
NETNS=skiff-cp-$CP_ID
BRIDGE=skiff-br0
BRIDGE_IP=$SUBNET.1
BRIDGE_PREFIX=24
EOF
    load_state "$DIR"

    # From here on, any failure tears down what was started.
    trap 'rc=$?; if ((rc != 0)); then say "up failed; cleaning up"; cmd_down "$DIR" >/dev/null 2>&1 || true; fi' EXIT

    # -- network ------------------------------------------------------------
    # A fresh namespace has only a down loopback.  The bridge is the "switch"
    # that node namespaces plug into (see attach).
    ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
    # The bridge gets an address of its own.  Without one, Linux gives a
    # bridge the lowest MAC among its ports and changes it when that port
    # leaves: every node that had the API server's address in its ARP cache
    # then sends to a MAC nobody owns, and all its requests (lease, status,
    # even new connections' SYNs) vanish until ARP asks again, up to 30 s
    # later.  A set address (locally administered, random) is kept for good.
    ip -n "$NETNS" link add "$BRIDGE" address "02:$(random_hex 5 | sed 's/../&:/g; s/:$//')" type bridge
    ip -n "$NETNS" addr add "$BRIDGE_IP/$BRIDGE_PREFIX" dev "$BRIDGE"
    ip -n "$NETNS" link set "$BRIDGE" up

    # -- certificates -------------------------------------------------------
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    new_ca "$PKI"
    # The API server's serving certificate must be valid for every name and
    # address clients use: the bridge address (nodes), 127.0.0.1 (the
    # controller manager and scheduler), and the in-cluster names and
    # ClusterIP of the `kubernetes` service.
    new_cert "$PKI" apiserver "/CN=kube-apiserver" server \
        "IP:$BRIDGE_IP, IP:127.0.0.1, IP:$KUBERNETES_SERVICE_IP, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:localhost"
    # Users.  system:masters is the group RBAC always allows everything.
    new_cert "$PKI" admin "/O=system:masters/CN=skiff-admin" client
    # The API server is itself a client of the node agents (logs, exec,
    # port-forward go to https://NODE:10250): this is the identity it uses.
    new_cert "$PKI" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
    # The default RBAC policy has roles bound to these exact user names.
    new_cert "$PKI" controller-manager "/CN=system:kube-controller-manager" client
    new_cert "$PKI" scheduler "/CN=system:kube-scheduler" client
    # Service-account tokens are JWTs: the controller manager (token
    # secrets) and the API server (TokenRequest) sign them with the private
    # key, the API server verifies them with the public one.
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null)
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI"/*.key
    chmod 644 "$PKI"/*.crt "$PKI/sa.pub"

    write_kubeconfig "$DIR/admin.kubeconfig" "$APISERVER" skiff-admin "$PKI/admin.crt" "$PKI/admin.key"
    write_kubeconfig "$DIR/controller-manager.kubeconfig" "https://127.0.0.1:$APISERVER_PORT" \
        system:kube-controller-manager "$PKI/controller-manager.crt" "$PKI/controller-manager.key"
    write_kubeconfig "$DIR/scheduler.kubeconfig" "https://127.0.0.1:$APISERVER_PORT" \
        system:kube-scheduler "$PKI/scheduler.crt" "$PKI/scheduler.key"

    # -- etcd ---------------------------------------------------------------
    # A one-member cluster on loopback, plain HTTP: only the API server in
    # this namespace can reach it.
    start etcd "$BIN/etcd" \
        --name=skiff --data-dir="$ETCD_DATA" --logger=zap \
        --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="skiff=http://127.0.0.1:$ETCD_PEER_PORT" \
        --snapshot-count=10000
    # bash's /dev/tcp: succeeds once something accepts on the port.
    wait_for "etcd to listen" etcd in_netns bash -c "exec 3<>/dev/tcp/127.0.0.1/$ETCD_CLIENT_PORT"

    # -- kube-apiserver -----------------------------------------------------
    # --bind-address=0.0.0.0 means every address of *this namespace*: its
    # loopback and the bridge, nothing of the host.
    # --insecure-port=0 matters: 1.20 still defaults to also serving plain
    # HTTP on 127.0.0.1:8080 with no authentication or authorization at all.
    # (Its log then says the flag "has no effect now"; that text is wrong.)
    # BoundServiceAccountTokenVolume (alpha in 1.20, on by default from
    # 1.22): the ServiceAccount admission plugin gives pods a projected
    # volume (a TokenRequest token bound to the pod, the kube-root-ca.crt
    # ConfigMap, the namespace) instead of the legacy token Secret, as
    # every current cluster does.
    # --endpoint-reconciler-type=none: by default the API server keeps the
    # Endpoints of the `kubernetes` service pointing at itself; nothing here
    # implements services (no kube-proxy), so skip that machinery.
    # An audit log of the nodes' requests, when asked: one line per request
    # as it completes (a watch counts when it ends).
    local audit_flags=()
    if [[ $AUDIT == 1 ]]; then
        printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' \
            'omitStages: [RequestReceived, ResponseStarted]' 'rules:' \
            '- level: Metadata' '  userGroups: [system:nodes]' '- level: None' \
            >"$DIR/audit-policy.yaml"
        audit_flags=(--audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/logs/audit.log")
    fi
    start kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-address="$BRIDGE_IP" \
        --bind-address=0.0.0.0 --secure-port="$APISERVER_PORT" \
        --insecure-port=0 \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction,ServiceAccount \
        --allow-privileged=true \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$PKI/sa.pub" \
        --service-account-signing-key-file="$PKI/sa.key" \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP,Hostname \
        --endpoint-reconciler-type=none \
        --feature-gates=BoundServiceAccountTokenVolume=true \
        "${audit_flags[@]}" \
        --profiling=false --v=1
    # /readyz turns ok once etcd is reachable and the post-start hooks ran
    # (default RBAC roles and bindings, priority classes, system namespaces).
    wait_for "kube-apiserver /readyz" kube-apiserver kube --request-timeout=5s get --raw /readyz
    local t_api
    t_api=$(elapsed "$t0")

    # -- kube-controller-manager --------------------------------------------
    # It authenticates to the API server as system:kube-controller-manager;
    # with --use-service-account-credentials each controller then runs under
    # its own service account (system:serviceaccount:kube-system:<name>) with
    # a role of its own, as in a real cluster.
    # Controllers that matter to a node agent:
    #   serviceaccount, serviceaccount-token: the `default` account of every
    #     namespace and its token Secret (mounted into pods), signed with
    #     --service-account-private-key-file; --root-ca-file is the ca.crt
    #     placed in those Secrets.
    #   nodelifecycle: a Node whose Lease in kube-node-lease is not renewed
    #     for --node-monitor-grace-period gets Ready=Unknown (NotReady), the
    #     node.kubernetes.io/unreachable taints, and its pods are evicted
    #     after 5 minutes.
    #   csrsigning: signs CertificateSigningRequests with the cluster CA
    #     (--cluster-signing-*), for node agents that request certificates.
    #   nodeipam (SKIFF_K8S_CLUSTER_CIDR): Node.spec.podCIDR.  When it starts
    #     it waits 10 s before listing nodes (wait.Poll in
    #     pkg/controller/nodeipam/ipam/cidr_allocator.go), and controllers
    #     start one after the other in random order, so it delays the
    #     serviceaccount controller half of the time.
    # --kube-api-qps/burst: the client-side rate limit (default 20/s, burst
    # 30) otherwise throttles the API discovery every controller does at
    # start-up by a second or more.
    # No --authentication-kubeconfig/--authorization-kubeconfig: those let
    # its own HTTPS port (metrics) check callers against the API server; we
    # only need its /healthz, which is always allowed.  With them and no
    # front-proxy CA configured in the API server it logs an error about
    # "requestheader-client-ca-file" many times a minute.
    local cidr_flags=(--allocate-node-cidrs=false)
    if [[ -n $CLUSTER_CIDR ]]; then
        cidr_flags=(--allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24)
    fi
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$DIR/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" --port=0 \
        --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file="$PKI/sa.key" \
        --root-ca-file="$PKI/ca.crt" \
        --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        "${cidr_flags[@]}" \
        --node-monitor-period=5s --node-monitor-grace-period=40s \
        --feature-gates=BoundServiceAccountTokenVolume=true \
        --kube-api-qps=100 --kube-api-burst=200 \
        --profiling=false --v=1

    # -- kube-scheduler -----------------------------------------------------
    # It watches pods with no spec.nodeName and nodes, filters the nodes
    # (Ready, untainted or tolerated, enough allocatable cpu/memory/pods,
    # ...), scores the rest and creates a Binding, which sets spec.nodeName.
    # A node agent sees only the result: a pod bound to its node.
    start kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig="$DIR/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --port=0 \
        --leader-elect=false \
        --profiling=false --v=1

    # The serviceaccount controller creates `default` in every namespace;
    # pods cannot be created in a namespace before it exists (the
    # ServiceAccount admission plugin rejects them), so tests wait for it.
    wait_for "the default service account" kube-controller-manager \
        kube --request-timeout=5s get serviceaccount default --namespace default

    # NAME=value lines, values shell-quoted (%q leaves plain paths as they
    # are, so simple parsers can read it too).  `set -a; . DIR/env; set +a`
    # exports them.
    {
        echo "# Written by $PROG up; source it."
        local kv
        for kv in NETNS="$NETNS" NETNS_PATH="$NETNS_PATH" BRIDGE="$BRIDGE" BRIDGE_IP="$BRIDGE_IP" \
                  BRIDGE_PREFIX="$BRIDGE_PREFIX" APISERVER="$APISERVER" \
                  KUBECONFIG="$DIR/admin.kubeconfig" KUBECTL="$(kubectl_bin)" CA_CERT="$PKI/ca.crt" \
                  SERVICE_CIDR="$SERVICE_CIDR" CLUSTER_CIDR="$CLUSTER_CIDR"; do
            printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
        done
    } >"$DIR/env"
    trap - EXIT
    say "control plane up in $(elapsed "$t0") s (API server ready after $t_api s): netns $NETNS, $APISERVER"
}

cmd_node_kubeconfig() {
    [[ $# == 3 ]] || die "usage: $PROG node-kubeconfig DIR NODENAME OUT"
    load_state "$1" || die "$1: no control plane state"
    local node=$2 out=$3
    # A node name is a DNS subdomain; checking also keeps it safe to put in
    # a certificate subject.
    [[ $node =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] || die "invalid node name '$node'"
    # The Node authorizer and the NodeRestriction admission plugin recognise
    # a node by exactly this identity, and then let it touch only its own
    # Node, its own Lease and the pods bound to it (and what they use).
    new_cert "$PKI" "node-$node" "/O=system:nodes/CN=system:node:$node" client
    chmod 600 "$PKI/node-$node.key"
    write_kubeconfig "$out" "$APISERVER" "system:node:$node" "$PKI/node-$node.crt" "$PKI/node-$node.key"
}

cmd_attach() {
    [[ $# == 3 || $# == 4 ]] || die "usage: $PROG attach DIR NETNS IP/PREFIX [IFNAME]"
    load_state "$1" || die "$1: no control plane state"
    local target=$2 addr=$3 ifname=${4:-eth0}
    [[ -e $NETNS_PATH ]] || die "control plane netns $NETNS does not exist"
    [[ $target == */* ]] || target=/run/netns/$target
    [[ -e $target ]] || die "$target does not exist"
    [[ $addr == */* ]] || die "address must be IP/PREFIX, e.g. $SUBNET.2/24"
    local peer
    peer=cpv-$(random_hex 4)   # the end in the control plane's netns
    # Create the pair inside the node's namespace and push one end into the
    # control plane's namespace by name; neither end ever exists in the
    # host's namespace.
    nsenter --net="$target" ip link add "$ifname" type veth peer name "$peer" netns "$NETNS"
    echo "$peer" >>"$DIR/veths"
    ip -n "$NETNS" link set "$peer" master "$BRIDGE" up
    nsenter --net="$target" sh -c "
        ip link set lo up &&
        ip addr add '$addr' dev '$ifname' &&
        ip link set '$ifname' up &&
        ip route replace default via '$BRIDGE_IP' dev '$ifname'"
}

cmd_down() {
    [[ $# == 1 ]] || die "usage: $PROG down DIR"
    load_state "$1" || return 0   # never started: nothing to do
    local name pid st i
    if [[ -f $DIR/pids ]]; then
        # Newest first: scheduler and controller manager, API server, etcd.
        tac "$DIR/pids" | while read -r name pid st; do
            alive "$pid" "$st" && kill -TERM "$pid" 2>/dev/null || true
        done
        for ((i = 0; i < 100; i++)); do
            local any=0
            while read -r name pid st; do alive "$pid" "$st" && any=1; done <"$DIR/pids"
            ((any)) || break
            sleep 0.1
        done
        while read -r name pid st; do
            alive "$pid" "$st" && { say "$name (pid $pid) ignored SIGTERM; killing"; kill -KILL "$pid" 2>/dev/null || true; }
        done <"$DIR/pids"
        rm -f "$DIR/pids"
    fi
    if [[ -e $NETNS_PATH ]]; then
        # Deleting one end of a veth deletes the other, in whatever namespace.
        if [[ -f $DIR/veths ]]; then
            while read -r name; do ip -n "$NETNS" link del "$name" 2>/dev/null || true; done <"$DIR/veths"
        fi
        ip netns del "$NETNS"
    fi
    rm -f "$DIR/veths" "$DIR/env"
    remove_etcd_data "${ETCD_DATA:-}"
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
        build) [[ $# == 0 ]] || die "usage: $PROG build"; cmd_build ;;
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        node-kubeconfig) cmd_node_kubeconfig "$@" ;;
        attach) cmd_attach "$@" ;;
        kubectl)
            [[ $# -ge 1 ]] || die "usage: $PROG kubectl DIR ARGS..."
            load_state "$1" || die "$1: no control plane state"
            shift
            kube "$@" ;;
        exec)
            [[ $# -ge 2 ]] || die "usage: $PROG exec DIR COMMAND..."
            load_state "$1" || die "$1: no control plane state"
            shift
            in_netns "$@" ;;
        *) sed -n '/^# Usage:/,/^# Must run/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
