//! Overload benchmark (run by `make bench-overload`, via `benches/overload.sh`): an open-loop
//! load generator. It measures the refresh capacity of a running Keyward (closed loop), then
//! offers refresh rotations at 1x and 3x that rate while probing JWKS, discovery and
//! `client_credentials` at a steady rate, and prints p50/p99 and the share shed per class as a
//! Markdown table. Open loop because overload is a rate the clients choose, not one the server
//! sets: a closed loop (wrk) slows down with the server and never overloads it. (Neither wrk nor
//! the Debian packages have an open-loop mode; `oha` would be a large build for this alone.)
//!
//! `overload BASE CLIENT_ID SECRET USERNAME PASSWORD SECONDS`
#![expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::print_stdout,
    clippy::expect_used,
    reason = "a benchmark printing rates and percentiles: counts become floats and back"
)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/endpoint.rs"]
mod endpoint;

use endpoint::Endpoint as Target;

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    ok: usize,
    shed: usize,
    other: usize,
}

impl Tally {
    fn add(&mut self, status: Option<u16>, took: Duration) {
        self.latencies.push(took);
        match status {
            Some(200) => self.ok += 1,
            Some(503) => self.shed += 1,
            _ => self.other += 1,
        }
    }

    fn row(&mut self, phase: &str, class: &str, secs: f64) -> String {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n.max(1)) - 1;
            self.latencies
                .get(i)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        format!(
            "| {phase} | {class} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1}% | {} |",
            n as f64 / secs,
            self.ok as f64 / secs,
            pct(0.50),
            pct(0.99),
            100.0 * self.shed as f64 / n.max(1) as f64,
            self.other
        )
    }
}

type Pool = Arc<Mutex<VecDeque<String>>>;

/// One rotation: takes a token, gives back its successor (or itself, when shed).
async fn rotate(target: &Target, tokens: &Pool) -> (Option<u16>, Duration) {
    let Some(token) = tokens.lock().expect("lock").pop_front() else {
        return (None, Duration::ZERO);
    };
    let start = Instant::now();
    let (status, body) = target
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
        .await;
    let took = start.elapsed();
    let next = match (status, body) {
        (Some(200), Some(b)) => b["refresh_token"].as_str().map(str::to_owned),
        (Some(503), _) => Some(token),
        _ => None,
    };
    if let Some(t) = next {
        tokens.lock().expect("lock").push_back(t);
    }
    (status, took)
}

/// Sends `f` at `rate` per second for `secs`, each on its own task, whatever the answers take.
async fn open_loop<F, Fut>(rate: f64, secs: f64, f: F) -> Tally
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Option<u16>, Duration)> + Send + 'static,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = tokio::time::Instant::now();
    let total = (rate * secs) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let fut = f();
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            let (status, took) = fut.await;
            tally.lock().expect("lock").add(status, took);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(tally)
        .ok()
        .expect("all tasks done")
        .into_inner()
        .expect("lock")
}

/// Enough refresh tokens for every request in flight at 3x (one family each).
async fn seed(target: &Arc<Target>, username: &str, password: &str) -> Pool {
    let tokens: Pool = Arc::default();
    for _ in 0..(1500 / 16) {
        let batch: Vec<_> = (0..16)
            .map(|_| {
                let target = Arc::clone(target);
                let (u, p) = (username.to_owned(), password.to_owned());
                tokio::spawn(async move {
                    let form = [
                        ("grant_type", "password"),
                        ("username", u.as_str()),
                        ("password", p.as_str()),
                        ("scope", "openid offline_access"),
                    ];
                    let body = target.token(&form).await.1?;
                    body["refresh_token"].as_str().map(str::to_owned)
                })
            })
            .collect();
        for handle in batch {
            if let Ok(Some(t)) = handle.await {
                tokens.lock().expect("lock").push_back(t);
            }
        }
    }
    tokens
}

/// Rotations per second with 16 requests always in flight (closed loop).
async fn capacity(target: &Arc<Target>, tokens: &Pool, secs: f64) -> f64 {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (target, tokens, done) =
                (Arc::clone(target), Arc::clone(tokens), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < until {
                    if let (Some(200), _) = rotate(&target, &tokens).await {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs
}

/// Refresh offered at `rate`, with the three probes at a steady 50/s each; prints four rows.
async fn phase(target: &Arc<Target>, tokens: &Pool, name: &str, rate: f64, secs: f64) {
    let probe_rate = 50.0;
    let refresh = {
        let (target, tokens) = (Arc::clone(target), Arc::clone(tokens));
        open_loop(rate, secs, move || {
            let (target, tokens) = (Arc::clone(&target), Arc::clone(&tokens));
            async move { rotate(&target, &tokens).await }
        })
    };
    let probe = |path: &'static str| {
        let target = Arc::clone(target);
        open_loop(probe_rate, secs, move || {
            let target = Arc::clone(&target);
            async move {
                let start = Instant::now();
                let status = if path == "/token" {
                    target
                        .token(&[("grant_type", "client_credentials")])
                        .await
                        .0
                } else {
                    target.get(path).await
                };
                (status, start.elapsed())
            }
        })
    };
    let (mut r, mut j, mut d, mut c) = tokio::join!(
        refresh,
        probe("/jwks.json"),
        probe("/.well-known/openid-configuration"),
        probe("/token"),
    );
    println!("{}", r.row(name, "refresh_token", secs));
    println!("{}", j.row(name, "JWKS", secs));
    println!("{}", d.row(name, "discovery", secs));
    println!("{}", c.row(name, "client_credentials", secs));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [base, id, secret, username, password, secs] = &args[..] else {
        eprintln!("usage: overload BASE CLIENT_ID SECRET USERNAME PASSWORD SECONDS");
        std::process::exit(2);
    };
    let secs: f64 = secs.parse().expect("seconds");
    let target = Arc::new(Target {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        base: base.clone(),
        id: id.clone(),
        secret: secret.clone(),
    });
    let tokens = seed(&target, username, password).await;
    eprintln!(
        "seeded {} refresh tokens",
        tokens.lock().expect("lock").len()
    );
    let capacity = capacity(&target, &tokens, secs).await;
    println!("refresh capacity (closed loop, 16 in flight): {capacity:.0} rotations/s");
    println!();
    println!(
        "| load | class | offered/s | answered 200/s | p50 ms | p99 ms | shed (503) | other |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for factor in [1.0, 3.0] {
        let name = format!("{factor:.0}x refresh");
        phase(&target, &tokens, &name, capacity * factor, secs).await;
    }
}
