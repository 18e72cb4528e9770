#!/usr/bin/env bash
# A 5-container vecino testnet under podman, on one podman network, each peer with its data
# directory on a volume and a read-only root. Checks, and fails loudly on the first that does
# not hold:
#   1. the first container answers /healthz within 2 s of `podman run` (time to ready); its
#      API, bound beyond loopback, requires the tokens the node created on the volume
#      (/data/api.token, api-read.token, mode 0600): no token 401, the read token reads but
#      may not post (403), a Host that is not the API's 421, /healthz open;
#   2. the other four, bootstrapped through the first one's DNS name (/dns4/<name>/tcp/7301,
#      resolved by podman's network DNS), and the first all list all five as alive within
#      10 s of the last start, each known by the DNS name it advertises (as the Kubernetes
#      manifests do: /dns4/<pod>.vecino/...);
#   3. a post made at one peer is at all five within 10 s;
#   4. a stopped and restarted container keeps its identity and tokens and catches up a post
#      made while it was down; the image's health check passes;
#   5. the same volume in a new container on a network of its own (no peer to learn from)
#      keeps the identity, the tokens and every post: they come from its store;
#   6. a peer whose bootstrap name does not resolve yet (its container starts 3 s later, as a
#      Kubernetes pod's name appears once it is ready) joins it within 10 s of its start: the
#      early "no such name" is not believed for long.
# Prints the figures (image size, time to ready, convergence, delivery) as `figure: ...` lines.
#
#   deploy/container/testnet.sh [--image localhost/vecino:latest] [--keep]
#
# Needs podman (and the image: deploy/container/build.sh), curl and jq. Everything it creates
# is named vt<pid>-* and removed on exit, failure and Ctrl-C (--keep leaves it for a look).
# The API is published on 127.0.0.1 only (random ports; the image's api_names accept the
# loopback names with any port); every request but /healthz carries the container's write
# token (read from /data/api.token with `podman cp`).
set -euo pipefail

image=localhost/vecino:latest
keep=false
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image=${2:?--image needs a value}; shift 2 ;;
        --keep) keep=true; shift ;;
        -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "testnet.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in podman curl jq; do
    command -v "$tool" >/dev/null 2>&1 || { echo "testnet.sh: $tool not found" >&2; exit 1; }
done
podman image exists "$image" || {
    echo "testnet.sh: no image $image (build it: deploy/container/build.sh --tag $image)" >&2
    exit 1
}

run=vt$$
net=$run-net
solo=$run-solo
late=$run-late
n=5
names=()
for i in $(seq 0 $((n - 1))); do names+=("$run-$i"); done

say() { printf '[testnet %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
# podman without systemd (CI, containers) complains on every start that it cannot set a timer
# for the health check; the check itself is run here with `podman healthcheck run`.
podman() { command podman "$@" 2> >(grep -v -e 'unable to get systemd connection' -e 'failed to connect to syslog' >&2); }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
figure() { printf 'figure: %s\n' "$*"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ $rc -ne 0 ]; then
        echo "--- FAILED (exit $rc); last log lines of each container:" >&2
        for c in $(podman ps -a --filter "name=^$run-" --format '{{.Names}}' 2>/dev/null); do
            echo "--- $c" >&2
            podman logs --tail 15 "$c" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
        done
    fi
    if $keep; then
        say "--keep: left containers, volumes and networks named $run-*"
        exit $rc
    fi
    local cs vs
    cs=$(podman ps -a --filter "name=^$run-" --format '{{.Names}}' 2>/dev/null || true)
    [ -n "$cs" ] && podman rm -f -t 0 $cs >/dev/null 2>&1 || true
    vs=$(podman volume ls --filter "name=^$run-" --format '{{.Name}}' 2>/dev/null || true)
    [ -n "$vs" ] && podman volume rm -f $vs >/dev/null 2>&1 || true
    podman network rm -f "$net" "$solo" "$late" >/dev/null 2>&1 || true
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

declare -A api tok
# start NAME NETWORK VOLUME [BOOTSTRAP]: a detached container, its API published on loopback.
start() {
    local name=$1 network=$2 volume=$3 boot=${4:-}
    local args=(run -d --name "$name" --hostname "$name" --network "$network"
        --read-only -v "$volume:/data" -p 127.0.0.1::7300
        --health-interval disable --stop-timeout 10
        -e VECINO_NAME="$name" -e VECINO_LOG=warn
        -e VECINO_ADVERTISE="/dns4/$name/tcp/7301,/dns4/$name/udp/7301/quic-v1")
    [ -n "$boot" ] && args+=(-e VECINO_BOOTSTRAP="$boot")
    podman "${args[@]}" "$image" >/dev/null
    api[$name]=$(podman port "$name" 7300/tcp | head -n 1)
    [ -n "${api[$name]}" ] || fail "$name: no published API port"
}

# ready NAME TIMEOUT_S: waits for /healthz; fails after the timeout.
ready() {
    local name=$1 timeout=$2 t0
    t0=$(now)
    while ! curl -fsS -m 1 "http://${api[$name]}/healthz" >/dev/null 2>&1; do
        awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN { exit !(b - a > t) }' &&
            fail "$name: /healthz did not answer within ${timeout} s"
        podman container exists "$name" && [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] ||
            fail "$name exited"
        sleep 0.05
    done
}

# token NAME [FILE]: the token the node keeps in /data/FILE (api.token: the write one).
# `podman cp` (a tar stream): the image has no shell and no cat.
token() {
    local t
    t=$(podman cp "$1:/data/${2:-api.token}" - | tar -xO) || fail "$1: cannot read /data/${2:-api.token}"
    t=$(printf '%s' "$t" | head -n 1)
    [ ${#t} -ge 16 ] || fail "$1: /data/${2:-api.token} holds no token"
    printf '%s' "$t"
}

# code NAME PATH [CURL ARGS...]: the HTTP status of a request to NAME's API.
code() {
    local name=$1 path=$2
    shift 2
    curl -sS -m 5 -o /dev/null -w '%{http_code}' "$@" "http://${api[$name]}$path"
}

get() { curl -fsS -m 5 -H "authorization: Bearer ${tok[$1]}" "http://${api[$1]}$2"; }

alive() { get "$1" /v1/members 2>/dev/null | jq '[.[] | select(.status == "alive")] | length' 2>/dev/null || echo 0; }

# converge TIMEOUT_S NAMES...: until every one lists all n as alive; prints the seconds.
converge() {
    local timeout=$1 t0 c ok
    shift
    t0=$(now)
    while :; do
        ok=0
        for c in "$@"; do [ "$(alive "$c")" = "$n" ] && ok=$((ok + 1)); done
        [ $ok -eq $# ] && { since "$t0"; return 0; }
        awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN { exit !(b - a > t) }' && {
            for c in "$@"; do echo "$c knows $(alive "$c") alive" >&2; done
            fail "not every peer lists all $n as alive within ${timeout} s"
        }
        sleep 0.1
    done
}

has_post() { get "$1" "/v1/posts?topic=ci&limit=1000" 2>/dev/null | jq -e --arg t "$2" '[.posts[] | select(.text == $t)] | length == 1' >/dev/null 2>&1; }

# delivered TEXT TIMEOUT_S NAMES...: until the post is at every one; prints the seconds.
delivered() {
    local text=$1 timeout=$2 t0 c ok
    shift 2
    t0=$(now)
    while :; do
        ok=0
        for c in "$@"; do has_post "$c" "$text" && ok=$((ok + 1)); done
        [ $ok -eq $# ] && { since "$t0"; return 0; }
        awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN { exit !(b - a > t) }' && {
            for c in "$@"; do has_post "$c" "$text" || echo "$c lacks $text" >&2; done
            fail "post $text not at all peers within ${timeout} s"
        }
        sleep 0.1
    done
}

post() { curl -fsS -m 5 -X POST -H 'content-type: application/json' -H "authorization: Bearer ${tok[$1]}" \
    -d "{\"topic\":\"ci\",\"text\":\"$2\"}" "http://${api[$1]}/v1/posts" >/dev/null ||
    fail "POST /v1/posts at $1 failed"; }

peer_id() { get "$1" /v1/status | jq -r .peer_id; }

# --- the image ----------------------------------------------------------------------------
size=$(podman image inspect -f '{{.Size}}' "$image")
figure "image $image: $((size / 1000)) kB ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }') MB)"
[ "$(podman image inspect -f '{{.Config.User}}' "$image")" = "10001:10001" ] || fail "the image does not run as 10001"

# --- 1. the first peer, time to ready --------------------------------------------------------
podman network create "$net" >/dev/null
say "network $net; starting ${names[0]}"
t0=$(now)
start "${names[0]}" "$net" "${names[0]}-data"
ready "${names[0]}" 10
t_ready=$(since "$t0")
figure "time to ready (podman run until /healthz answers): $t_ready s"
awk -v t="$t_ready" 'BEGIN { exit !(t <= 2.0) }' || fail "ready after $t_ready s, more than 2 s"

# --- 1b. who may use the API ------------------------------------------------------------------
c0=${names[0]}
tok[$c0]=$(token "$c0")
read_tok=$(token "$c0" api-read.token)
[ "${tok[$c0]}" != "$read_tok" ] || fail "$c0: the write and read tokens are the same"
modes=$(podman cp "$c0:/data/api.token" - | tar -tvf - | awk '{print $1}')
modes+=" $(podman cp "$c0:/data/api-read.token" - | tar -tvf - | awk '{print $1}')"
[ "$modes" = "-rw------- -rw-------" ] || fail "$c0: token files not mode 0600: $modes"
expect() { # expect CODE WHAT NAME PATH [CURL ARGS...]
    local want=$1 what=$2 got
    shift 2
    got=$(code "$@") || true
    [ "$got" = "$want" ] || fail "$c0: $what: HTTP $got, not $want"
}
expect 200 "/healthz without a token" "$c0" /healthz
expect 401 "/v1/status without a token" "$c0" /v1/status
expect 401 "/v1/status with a wrong token" "$c0" /v1/status -H "authorization: Bearer 0123456789abcdef0123"
expect 200 "/v1/status with the read token" "$c0" /v1/status -H "authorization: Bearer $read_tok"
expect 200 "/metrics with the read token" "$c0" /metrics -H "authorization: Bearer $read_tok"
expect 403 "a post with the read token" "$c0" /v1/posts -X POST -H 'content-type: application/json' \
    -H "authorization: Bearer $read_tok" -d '{"topic":"ci","text":"denied"}'
expect 200 "/v1/status with the write token" "$c0" /v1/status -H "authorization: Bearer ${tok[$c0]}"
expect 421 "a Host that is not the API's" "$c0" /healthz -H "Host: rebound.example:${api[$c0]##*:}"
say "$c0: API tokens in /data (0600); 401 without, 403 read-token post, 421 foreign Host, /healthz open"

# --- 2. four more through the first one's name --------------------------------------------
boot="/dns4/${names[0]}/tcp/7301"
say "starting ${names[*]:1} with VECINO_BOOTSTRAP=$boot"
for c in "${names[@]:1}"; do start "$c" "$net" "$c-data" "$boot"; done
for c in "${names[@]:1}"; do ready "$c" 10; tok[$c]=$(token "$c"); done
t_conv=$(converge 10 "${names[@]}")
figure "all 5 list all 5 as alive: $t_conv s after the last container answered /healthz"
for c in "${names[@]}"; do
    named=$(get "$c" /v1/members | jq '[.[] | select(any(.addrs[]?; startswith("/dns4/")))] | length')
    [ "$named" = "$n" ] || fail "$c knows $named of $n peers by an advertised /dns4 name"
done

# --- 3. a post reaches all five -----------------------------------------------------------
post "${names[3]}" "p1-$run"
t_post=$(delivered "p1-$run" 10 "${names[@]}")
figure "a post at all 5: $t_post s"

# --- 4. stop and start again ----------------------------------------------------------------
victim=${names[2]}
id_before=$(peer_id "$victim")
tok_before=${tok[$victim]}
podman healthcheck run "$victim" >/dev/null || fail "$victim: the image's health check fails"
say "stopping $victim ($id_before)"
podman stop -t 10 "$victim" >/dev/null
post "${names[0]}" "p2-$run"
others=("${names[0]}" "${names[1]}" "${names[3]}" "${names[4]}")
delivered "p2-$run" 10 "${others[@]}" >/dev/null
t0=$(now)
podman start "$victim" >/dev/null
api[$victim]=$(podman port "$victim" 7300/tcp | head -n 1)
ready "$victim" 10
[ "$(token "$victim")" = "$tok_before" ] || fail "$victim came back with another API token"
[ "$(peer_id "$victim")" = "$id_before" ] || fail "$victim came back as $(peer_id "$victim"), not $id_before"
t_catch=$(delivered "p2-$run" 10 "$victim")
t_back=$(converge 10 "${names[@]}")
figure "restarted container: same identity and token; the post made while it was down after $t_catch s; all know all again after $t_back s"
podman healthcheck run "$victim" >/dev/null || fail "$victim: the health check fails after the restart"

# --- 5. its volume alone, in a new container on a network of its own -------------------------
podman stop -t 10 "$victim" >/dev/null
podman rm "$victim" >/dev/null
podman network create "$solo" >/dev/null
start "$victim-solo" "$solo" "$victim-data"
ready "$victim-solo" 10
tok[$victim-solo]=$(token "$victim-solo")
[ "${tok[$victim-solo]}" = "$tok_before" ] || fail "a new container on the volume has another API token"
[ "$(peer_id "$victim-solo")" = "$id_before" ] || fail "a new container on the volume is $(peer_id "$victim-solo"), not $id_before"
for text in "p1-$run" "p2-$run"; do
    has_post "$victim-solo" "$text" || fail "$text is not in the store on the volume"
done
figure "a new container on the same volume, alone: same identity and token, both posts from its store"
# --- 6. a bootstrap name that resolves late ---------------------------------------------------
podman network create "$late" >/dev/null
start "$late-a" "$late" "$late-a-data" "/dns4/$late-b/tcp/7301"
ready "$late-a" 10
tok[$late-a]=$(token "$late-a")
say "$late-a bootstraps through /dns4/$late-b, which does not exist for 3 s"
sleep 3
t0=$(now)
start "$late-b" "$late" "$late-b-data"
ready "$late-b" 10
tok[$late-b]=$(token "$late-b")
n=2
converge 10 "$late-a" "$late-b" >/dev/null
figure "a bootstrap name that resolved 3 s late: both peers alive to each other $(since "$t0") s after the second started"
say "PASS: 5 containers converged, a post reached all, a restart kept identity and store, a late bootstrap name joined"
