#!/usr/bin/env bash
# Browser test of the radar page: four real `vecino` peers on 127.0.0.1 behind the link shim,
# Debian's chromium driven by playwright-core under `node --test`.
#
# Installs what is missing (chromium, nodejs, npm, jq, curl, an emoji font with apt; playwright-core with
# npm ci), builds the binary (debug; honours CARGO_TARGET_DIR), starts the peers with ephemeral
# ports, temporary data dirs, --mdns false and static bootstrap, then runs radar.test.mjs.
# Every wait is bounded; every child is killed on exit, failure included.
# Screenshots: target/radar-screenshots/ (relative to the repo root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
export RADAR_SCREENSHOTS="$root/target/radar-screenshots"

say() { printf '[radar-test %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -e "$here/node_modules/playwright-core/package.json" ]; then
    say "npm ci (playwright-core)"
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

# --- the binary -------------------------------------------------------------------------------
say "cargo build -p vecino --locked"
(cd "$root" && cargo build -p vecino --locked --quiet)
bin="$target/debug/vecino"
export VECINO_BIN="$bin"

# --- four peers -------------------------------------------------------------------------------
work=$(mktemp -d /tmp/vecino-radar.XXXXXX)
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ $rc -ne 0 ]; then
        for f in "$work"/*.err; do [ -s "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT INT TERM

names=(ana beto cata dani)
declare -A id
for n in "${names[@]}"; do
    mkdir -p "$work/$n"
    id[$n]=$("$bin" keygen --out "$work/$n/identity.pem" --json | jq -r .peer_id)
done
# Links with distinct RTTs, so the coordinates spread out on the map, all within one barrio
# radius (the engine's default, 25 ms; a head is taken within 0.8 of it): the four peers
# converge to one barrio, which the test checks.
{
    echo '[default]'
    echo 'rtt_ms = 6.0'
    link() { printf '[[link]]\na = "%s"\nb = "%s"\nrtt_ms = %s\n' "${id[$1]}" "${id[$2]}" "$3"; }
    link ana beto 4; link ana cata 8; link ana dani 12
    link beto cata 6; link beto dani 10; link cata dani 5
} >"$work/links.toml"

declare -A api
start() { # name [bootstrap [more flags…]]
    local n=$1 boot=${2:-}
    local args=(run --data-dir "$work/$n" --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0
        --mdns false --name "$n" --log warn --emulate-links "$work/links.toml"
        --suspect-timeout-secs 6 --redial-max-secs 2)
    [ -n "$boot" ] && args+=(--bootstrap "$boot")
    [ $# -gt 2 ] && args+=("${@:3}")
    "$bin" "${args[@]}" >"$work/$n.out" 2>"$work/$n.err" &
    pids+=($!)
    for _ in $(seq 1 300); do # 30 s
        if [ -s "$work/$n.out" ]; then
            api[$n]=$(head -n 1 "$work/$n.out" | awk '{print $4}' | sed 's|http://||')
            [ -n "${api[$n]}" ] && return 0
        fi
        sleep 0.1
    done
    echo "$n did not print its API address" >&2
    return 1
}
start ana
boot=$(curl -fsS --max-time 5 "http://${api[ana]}/v1/status" | jq -r '[.advertise[] | select(contains("/tcp/"))][0]')
boot="$boot/p2p/${id[ana]}"
for n in beto cata dani; do start "$n" "$boot"; done
say "peers up: ana=${api[ana]} beto=${api[beto]} cata=${api[cata]} dani=${api[dani]}"
# A fifth peer, on its own (the map test counts four), whose API needs a token (set explicitly,
# so on loopback too): the page must work with ?token= and say what is missing without it.
mkdir -p "$work/eva"
write_token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
read_token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
start eva "" --api-token "$write_token" --api-read-token "$read_token"
export RADAR_TOKEN_NODE="{\"api\":\"${api[eva]}\",\"read\":\"$read_token\"}"
say "eva (token required) up: ${api[eva]}"

nodes='['
for n in "${names[@]}"; do nodes+="{\"name\":\"$n\",\"api\":\"${api[$n]}\",\"peer_id\":\"${id[$n]}\"},"; done
export RADAR_NODES="${nodes%,}]"

# --- the browser ------------------------------------------------------------------------------
mkdir -p "$RADAR_SCREENSHOTS"
say "node --test radar.test.mjs"
cd "$here"
timeout 600 node --test --test-reporter=spec radar.test.mjs
