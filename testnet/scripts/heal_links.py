# Links after a partition heals: `vecino demo --peers N` (real processes through the link shim),
# halves cut for CUT seconds through every peer's /v1/shim/cut, restored, then a census of every
# peer's /v1/links every 15 s. Usage (from the repo root, after `cargo build --release -p vecino`):
#   python3 testnet/scripts/heal_links.py [N=50] [CUT=120]
# Reproduced the links left deaf one way after a heal (docs/BENCHMARKS.md, Real-process testnet).
import json, re, subprocess, sys, time, urllib.request, signal, os
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
CUT = int(sys.argv[2]) if len(sys.argv) > 2 else 120
demo = subprocess.Popen([os.environ.get('VECINO_BIN', 'target/release/vecino'), 'demo', '--peers', str(N), '--post-every', '2s', '--keep'],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
data_dir = None
t0 = time.time()
for line in demo.stdout:
    print(line, end='')
    m = re.search(r'in (/tmp/\S+)', line)
    if m: data_dir = m.group(1)
    if 'found each other' in line: break
def get(port, path):
    return json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=10))
def post(port, path, body):
    req = urllib.request.Request(f'http://127.0.0.1:{port}{path}', data=json.dumps(body).encode(), headers={'content-type': 'application/json'})
    return json.load(urllib.request.urlopen(req, timeout=10))
ports = []
for i in range(N):
    ports.append(open(f'{data_dir}/p{i}/api.addr').read().strip().split(':')[1])
ids = [get(p, '/v1/status')['peer_id'] for p in ports]
def census(tag):
    stuck = {}
    for i, p in enumerate(ports):
        ls = get(p, '/v1/links')
        ls = ls['links'] if isinstance(ls, dict) else ls
        bad = [(l.get('peer_id') or l.get('peer'), l['status']) for l in ls if l['status'] != 'connected']
        if bad: stuck[i] = bad
    print(f'[{time.time()-t0:6.1f}s] {tag}: {len(stuck)} peers with non-connected links, {sum(len(v) for v in stuck.values())} links')
    return stuck
time.sleep(70)
census('before cut')
a, b = list(range(N // 2)), list(range(N // 2, N))
for i in a: post(ports[i], '/v1/shim/cut', {'peers': [ids[j] for j in b]})
for j in b: post(ports[j], '/v1/shim/cut', {'peers': [ids[i] for i in a]})
print(f'[{time.time()-t0:6.1f}s] cut for {CUT}s')
time.sleep(CUT)
census('end of cut')
for p in ports: post(p, '/v1/shim/restore', {})
print(f'[{time.time()-t0:6.1f}s] restored')
for k in range(10):
    time.sleep(15)
    stuck = census(f'{15*(k+1)} s after heal')
    tot = {}
    for p in ports:
        t = urllib.request.urlopen(f'http://127.0.0.1:{p}/metrics', timeout=10).read().decode()
        for l in t.splitlines():
            for key in ('vecino_transport_streams_replaced_total', 'reason="too_many_streams"', 'reason="stream_failed"'):
                if key in l and not l.startswith('#'):
                    tot[key] = tot.get(key, 0) + float(l.rsplit(' ', 1)[1])
    print('    ', tot)
json.dump({'ids': ids, 'ports': ports, 'stuck': stuck, 'data_dir': data_dir}, open(os.environ.get('STUCK_JSON', '/tmp/heal-links-stuck.json'), 'w'))
print('leaving the network up for inspection 240 s; pid', demo.pid)
time.sleep(5)
os.killpg(demo.pid, signal.SIGINT)
demo.wait(timeout=30)
