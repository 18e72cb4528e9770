//! Wire size and verification throughput of signed envelopes.
//!
//! `cargo bench -p vecino-proto --bench verify` runs criterion over signing and verification,
//! then prints a summary table of the figures beside their targets and baselines,
//! measured in the same run on one core.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};
use vecino_proto::pb::{self, Stream, event::Body};
use vecino_proto::{Bytes, Hlc, Identity, Verifier};

const NOW_MS: u64 = 1_763_702_400_000;

fn newspaper() -> Body {
    Body::Newspaper(pb::Newspaper {
        coordinate: Some(pb::Coordinate {
            vec: (0..8).map(|i| 12.5 + i as f32 * 3.25).collect(),
            height: 4.75,
            error: 0.31,
            adjustment: -0.42,
        }),
        uptime_s: 259_200,
        restarts: 2,
        barrio: 0x9e37_79b9_7f4a_7c15,
        connected: 7,
        flags: 1,
    })
}

/// `n` newspapers from 16 authors, as a node would receive them.
fn envelopes(n: usize) -> Vec<Bytes> {
    let ids: Vec<Identity> = (1..=16u8).map(|i| Identity::from_seed([i; 32])).collect();
    (0..n)
        .map(|i| {
            let hlc = Hlc { ms: NOW_MS - 5_000 + i as u64, counter: 0 };
            ids[i % 16]
                .sign(Stream::Newspaper, 1 + i as u64, hlc, newspaper())
                .unwrap()
                .envelope()
                .clone()
        })
        .collect()
}

fn forge(env: &Bytes) -> Bytes {
    let mut b = env.to_vec();
    let n = b.len();
    b[n - 3] ^= 0x20;
    Bytes::from(b)
}

fn batch_with_forgery(envs: &[Bytes], at: usize) -> Vec<Bytes> {
    let mut batch = envs.to_vec();
    batch[at] = forge(&batch[at]);
    batch
}

fn benches(c: &mut Criterion) {
    let envs = envelopes(1024);
    let id = Identity::from_seed([1; 32]);

    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_newspaper", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            id.sign(Stream::Newspaper, seq, Hlc { ms: NOW_MS, counter: 0 }, newspaper()).unwrap()
        })
    });
    g.bench_function("verify_single", |b| {
        let mut v = Verifier::default();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % envs.len();
            v.verify(envs[i].clone(), NOW_MS).unwrap()
        })
    });
    g.bench_function("verify_single_cold_key", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % envs.len();
            Verifier::default().verify(envs[i].clone(), NOW_MS).unwrap()
        })
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64", |b| {
        let mut v = Verifier::default();
        b.iter_batched(
            || envs[..64].to_vec(),
            |batch| v.verify_batch(batch, NOW_MS),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("verify_batch_64_one_forged", |b| {
        let mut v = Verifier::default();
        let mut at = 0;
        b.iter_batched(
            || {
                at = (at + 17) % 64;
                batch_with_forgery(&envs[..64], at)
            },
            |batch| v.verify_batch(batch, NOW_MS),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Envelopes verified per second by `f`, over `rounds` calls each covering `per_call` envelopes.
fn rate(rounds: usize, per_call: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..rounds / 10 {
        f(i); // warm up
    }
    let start = Instant::now();
    for i in 0..rounds {
        f(i);
    }
    (rounds * per_call) as f64 / start.elapsed().as_secs_f64()
}

fn summary() {
    let envs = envelopes(1024);
    let size = envs[0].len();
    let mut v = Verifier::default();
    let single = rate(20_000, 1, |i| {
        black_box(v.verify(envs[i % 1024].clone(), NOW_MS).unwrap());
    });
    let batch = rate(400, 64, |i| {
        let lo = (i * 64) % 1024;
        let r = v.verify_batch(envs[lo..lo + 64].to_vec(), NOW_MS);
        assert!(r.iter().all(|r| r.is_ok()));
    });
    let forged: Vec<Vec<Bytes>> =
        (0..16).map(|k| batch_with_forgery(&envs[k * 64..k * 64 + 64], (k * 29) % 64)).collect();
    let one_forged = rate(200, 64, |i| {
        let r = v.verify_batch(forged[i % 16].clone(), NOW_MS);
        assert_eq!(r.iter().filter(|r| r.is_err()).count(), 1);
    });
    println!();
    println!("vecino-proto summary (one core, this run)");
    println!("{:<44} {:>12} {:>14} {:>34}", "figure", "measured", "target", "baseline");
    println!(
        "{:<44} {:>10} B {:>14} {:>34}",
        "signed newspaper envelope on the wire", size, "<= 200 B", "Matrix federation ~762 B/dest"
    );
    println!("{:<44} {:>8.0} /s {:>14} {:>34}", "verify, single", single, ">= 25000 /s", "-");
    println!(
        "{:<44} {:>8.0} /s {:>14} {:>34}",
        "verify, batches of 64",
        batch,
        ">= 50000 /s",
        format!("single: {single:.0} /s")
    );
    println!(
        "{:<44} {:>8.0} /s {:>14} {:>34}",
        "verify, batches of 64 with one forged",
        one_forged,
        ">= 20000 /s",
        format!("single: {single:.0} /s")
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    summary();
}
