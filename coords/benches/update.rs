//! `Client::update` throughput, both profiles, 8-D, one core.
//!
//! The client is warmed up on a 490-peer clustered topology (the size of planetlab490), then
//! each iteration feeds one sample from a pre-drawn stream of (peer, peer coordinate, RTT),
//! so the figure includes the per-peer latency filter lookup but no RNG or noise generation
//! of the harness.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecino_coords::{Client, Coordinate, Profile, topology::Topology};

const PEERS: usize = 490;
const STREAM: usize = 4096;

fn bench_update(c: &mut Criterion) {
    let seed = 1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let matrix = Topology::Internet.generate(PEERS, &mut rng);
    // Plausible peer coordinates: a converged-looking spread, 8-D, small heights.
    let peers: Vec<Coordinate<8>> = (0..PEERS)
        .map(|_| {
            let v: [f64; 8] = std::array::from_fn(|_| rng.random_range(-0.1..0.1));
            Coordinate::from_parts(&v, rng.random_range(0.0..0.005), 0.2, 0.0).unwrap()
        })
        .collect();
    let stream: Vec<(usize, f64)> = (0..STREAM)
        .map(|_| {
            let j = rng.random_range(1..PEERS);
            (j, matrix.ms(0, j) / 1000.0)
        })
        .collect();
    let mut group = c.benchmark_group("client_update");
    group.throughput(Throughput::Elements(1));
    for profile in Profile::ALL {
        let mut client: Client<usize> = Client::new(profile.config());
        for &(j, rtt) in &stream {
            client.update_secs(&j, &peers[j], rtt, &mut rng).unwrap();
        }
        let mut k = 0;
        group.bench_function(profile.name(), |b| {
            b.iter(|| {
                let (j, rtt) = stream[k % STREAM];
                k += 1;
                black_box(
                    client.update_secs(black_box(&j), &peers[j], black_box(rtt), &mut rng).is_ok(),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_update);
criterion_main!(benches);
