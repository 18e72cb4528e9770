"""The testnet's traffic: posts at a steady rate through random peers' APIs and measures when
each post reaches each peer, as `vecino-testnet local` does on one machine.

Standard library only (it runs in a stock python image). Every peer is followed on its event
stream (GET /v1/events, `post` events) from before the first post, and read again through
GET /v1/posts at the end (the authoritative count). Prints one JSON report on stdout and
exits 1 when delivery is below --min-delivery, or when the peers do not converge in time.

    VECINO_API_TOKEN=... python3 traffic.py --peers vecino-0.vecino:7300,vecino-1.vecino:7300 --duration 600

The peers' API needs a token (every request but /healthz): the write token (it posts), from
VECINO_API_TOKEN (or --token-file), sent as `Authorization: Bearer`; all peers share it (the
Secret vecino-api-token). The host:port given must be a name the peers answer under (their
address, or a name in their api_names), else they answer 421.

Environment (the Job's): PEERS, or SERVICE and REPLICAS (the StatefulSet's peers
<service>-<i>.<service>:7300), VECINO_API_TOKEN, POSTS_PER_S, DURATION_S, SETTLE_S,
CONVERGE_S, MIN_DELIVERY, POST_BYTES, TOPIC, BUCKET_S.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request

TIMEOUT_S = 5
# Authorization headers of every request (set in main from the token).
AUTH = {}


def request(peer, path, **kw):
    headers = {**AUTH, **kw.pop("headers", {})}
    return urllib.request.Request(f"http://{peer}{path}", headers=headers, **kw)


def get(peer, path):
    with urllib.request.urlopen(request(peer, path), timeout=TIMEOUT_S) as r:
        return json.loads(r.read().decode())


def post(peer, topic, text):
    body = json.dumps({"topic": topic, "text": text}).encode()
    req = request(
        peer, "/v1/posts", data=body, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
        return json.loads(r.read().decode())


def log(msg):
    print(f"[traffic {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Record:
    """seen[k][peer]: when post k was first seen at the peer (s after t0)."""

    def __init__(self, peers):
        self.peers = peers
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.sent = {}  # k -> (author, t)
        self.seen = {}  # k -> {peer: t}
        self.stop = threading.Event()

    def now(self):
        return time.monotonic() - self.t0

    def saw(self, peer, text, t=None):
        try:
            k = int(text.split(" ", 1)[0])
        except (ValueError, IndexError):
            return
        t = self.now() if t is None else t
        with self.lock:
            row = self.seen.setdefault(k, {})
            if peer not in row or t < row[peer]:
                row[peer] = t


def follow(rec, peer, topic):
    """Reads `post` events of the topic until rec.stop; reconnects after errors."""
    while not rec.stop.is_set():
        try:
            with urllib.request.urlopen(request(peer, "/v1/events"), timeout=30) as r:
                event = None
                for raw in r:
                    if rec.stop.is_set():
                        return
                    line = raw.decode(errors="replace").rstrip("\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "post":
                        data = json.loads(line[5:].strip())
                        if data.get("topic") == topic:
                            rec.saw(peer, data.get("text", ""))
                    elif line == "":
                        event = None
        except (OSError, ValueError, urllib.error.URLError):
            time.sleep(0.5)


def stored(peer, topic):
    """Every post of the topic the peer holds (paged)."""
    out, cursor = [], 0
    for _ in range(1000):
        page = get(peer, f"/v1/posts?topic={topic}&since={cursor}&limit=10000")
        posts = page.get("posts", [])
        out.extend(p.get("text", "") for p in posts)
        cursor = page.get("next", cursor)
        if len(posts) < 10000:
            break
    return out


def check_access(peer, timeout=300):
    """None once the peer serves an authorised read; the refusal when it answers 401, 403 or 421
    (a wrong token or name does not heal by waiting); None as well when it does not answer in
    time (the convergence wait reports that)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            get(peer, "/v1/status")
            return None
        except urllib.error.HTTPError as e:
            if e.code in (401, 403, 421):
                body = e.read().decode(errors="replace").strip()
                return f"{peer} refused the request: HTTP {e.code} {body}"
        except (OSError, ValueError):
            pass
        time.sleep(1)
    return None


def converge(peers, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        full = 0
        for p in peers:
            try:
                alive = [m for m in get(p, "/v1/members") if m.get("status") == "alive"]
                full += len(alive) >= len(peers)
            except (OSError, ValueError, urllib.error.URLError):
                pass
        if full == len(peers):
            return time.monotonic() - t0
        time.sleep(1)
    return None


def quantile(v, q):
    """Nearest rank, in s rounded to the millisecond; None when empty."""
    if not v:
        return None
    v = sorted(v)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3)


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default=env("PEERS", ""), help="host:port of each API, comma-separated")
    ap.add_argument("--posts-per-s", type=float, default=float(env("POSTS_PER_S", "1")))
    ap.add_argument("--duration", type=float, default=float(env("DURATION_S", "300")))
    ap.add_argument("--settle", type=float, default=float(env("SETTLE_S", "120")))
    ap.add_argument("--converge", type=float, default=float(env("CONVERGE_S", "300")))
    ap.add_argument("--min-delivery", type=float, default=float(env("MIN_DELIVERY", "1.0")))
    ap.add_argument("--post-bytes", type=int, default=int(env("POST_BYTES", "200")))
    ap.add_argument("--topic", default=env("TOPIC", "traffic"))
    ap.add_argument("--bucket", type=float, default=float(env("BUCKET_S", "60")))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--token-file", help="a file holding the API's write token (else VECINO_API_TOKEN)"
    )
    a = ap.parse_args()
    token = env("VECINO_API_TOKEN", "")
    if a.token_file:
        with open(a.token_file) as f:
            token = f.readline()
    token = token.strip()
    if token:
        AUTH["authorization"] = f"Bearer {token}"
    else:
        log("no API token (VECINO_API_TOKEN, --token-file): peers that require one answer 401")
    peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    if not peers and env("SERVICE") and env("REPLICAS"):
        svc = env("SERVICE")
        peers = [f"{svc}-{i}.{svc}:7300" for i in range(int(env("REPLICAS")))]
    if len(peers) < 2:
        ap.error("give at least two peers (--peers or PEERS)")
    if not (0 < a.posts_per_s <= 100):
        ap.error("--posts-per-s must be in (0, 100]")

    access = check_access(peers[0])
    if access:
        log(access)
        print(json.dumps({"converged": False, "peers": peers, "error": access}))
        return 1
    log(f"{len(peers)} peers; waiting up to {a.converge:.0f} s for all to list all as alive")
    conv = converge(peers, a.converge)
    if conv is None:
        log("the peers did not converge")
        print(json.dumps({"converged": False, "peers": peers}))
        return 1
    log(f"converged after {conv:.1f} s; posting {a.posts_per_s}/s for {a.duration:.0f} s")

    rec = Record(peers)
    threads = [threading.Thread(target=follow, args=(rec, p, a.topic), daemon=True) for p in peers]
    for t in threads:
        t.start()
    time.sleep(2)  # the streams are open before the first post
    rec.t0 = time.monotonic()
    rng = random.Random(a.seed)
    filler = "x" * max(0, a.post_bytes - 12)
    failed, k, gap = 0, 0, 1.0 / a.posts_per_s
    while rec.now() < a.duration:
        due = k * gap
        if rec.now() < due:
            time.sleep(min(0.05, due - rec.now()))
            continue
        author = rng.choice(peers)
        t = rec.now()
        try:
            post(author, a.topic, f"{k} {filler}")
            with rec.lock:
                rec.sent[k] = (author, t)
            rec.saw(author, f"{k}", t)
        except (OSError, ValueError, urllib.error.URLError) as e:
            failed += 1
            log(f"post {k} at {author} failed: {e}")
        k += 1

    def missing():
        with rec.lock:
            return sum(
                1 for j in rec.sent for p in peers if p not in rec.seen.get(j, {})
            )

    t_end = rec.now()
    log(f"{len(rec.sent)} posts sent ({failed} failed); settling up to {a.settle:.0f} s")
    while missing() and rec.now() - t_end < a.settle:
        time.sleep(0.5)
    # The authoritative count: every peer's stored posts.
    for p in peers:
        try:
            for text in stored(p, a.topic):
                rec.saw(p, text, rec.now())
        except (OSError, ValueError, urllib.error.URLError) as e:
            log(f"cannot read the posts of {p}: {e}")
    rec.stop.set()

    lat, buckets = [], {}
    got = want = 0
    for j, (author, t) in rec.sent.items():
        row = rec.seen.get(j, {})
        for p in peers:
            if p == author:
                continue
            want += 1
            if p in row:
                got += 1
                d = max(0.0, row[p] - t)
                lat.append(d)
                b = int(t // a.bucket)
                buckets[b] = max(buckets.get(b, 0.0), d)
    ratio = got / want if want else 1.0
    report = {
        "converged": True,
        "converge_s": round(conv, 2),
        "peers": len(peers),
        "posts_sent": len(rec.sent),
        "posts_failed": failed,
        "deliveries": got,
        "deliveries_expected": want,
        "delivery_ratio": ratio,
        "latency_p50_s": quantile(lat, 0.5),
        "latency_p99_s": quantile(lat, 0.99),
        "latency_max_s": round(max(lat), 3) if lat else None,
        # The slowest delivery of the posts sent in each bucket: under a flapping link it is
        # the outage plus the catch-up after the heal.
        "latency_max_by_bucket_s": [
            {"from_s": b * a.bucket, "max_s": round(v, 3)} for b, v in sorted(buckets.items())
        ],
    }
    print(json.dumps(report, indent=1))
    if ratio < a.min_delivery:
        log(f"delivery {ratio:.5f} below {a.min_delivery}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
