//! `make bench` (via `benches/bench.sh`): a closed-loop load generator that measures, for each
//! scenario, throughput, latency, the server's CPU time per request (Keyward and its PostgreSQL
//! together, read from `/proc`), statements per request (`keyward_db_queries_total`) and resident
//! memory, and prints them next to the limits of the core they ran on. Written here rather than
//! with wrk because the refresh scenario feeds each rotated token back and the sign-in scenario
//! carries a CSRF cookie from the form to the POST, which wrk's Lua makes awkward and oha cannot
//! do; the numbers that matter (CPU, statements, RSS) come from the server side anyway.
//!
//! `load argon2` prints argon2id verifications per CPU-second with the configured parameters
//! (`KEYWARD_ARGON2_*`, else OWASP's); `run` measures it so, pinned to the server's core.
//!
//! `load run BASE METRICS_BASE SERVER_PID CLIENT_ID SECRET USERNAME PASSWORD SECONDS SIGN_INS
//! SERVER_CORE` prints the Markdown table; users `USERNAME-0` to
//! `USERNAME-15` must exist with `PASSWORD`.
#![expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::print_stdout,
    clippy::expect_used,
    reason = "a benchmark printing rates and percentiles: counts become floats and back"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common/endpoint.rs"]
mod endpoint;

use endpoint::Endpoint;

/// Requests in flight in every closed-loop scenario.
const IN_FLIGHT: usize = 16;
/// Linux reports process CPU time in clock ticks of `USER_HZ`, fixed at 100 by its ABI.
const USER_HZ: f64 = 100.0;

/// CPU seconds of a process, its reaped children included (`/proc/PID/stat` fields 14-17).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / USER_HZ
}

/// The PostgreSQL processes on this machine (the bench's cluster is the one running here).
fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .collect()
}

/// CPU seconds so far of the server and of PostgreSQL.
fn cpu_now(server: u32) -> (f64, f64) {
    let pg = postgres_pids().into_iter().map(cpu_seconds).sum();
    (cpu_seconds(server), pg)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak RSS, so each scenario reports its own (Linux `clear_refs`, value 5).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The server, the client, and what only this generator needs besides.
struct Target {
    endpoint: Endpoint,
    metrics: String,
    username: String,
    password: String,
}

impl std::ops::Deref for Target {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Target {
    /// `keyward_db_queries_total`, or `None` when this build does not count statements.
    async fn statements(&self) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("keyward_db_queries_total "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Worker `w`'s user: a storm is many people signing in, not one (whose attempts in flight
    /// the per-username throttle lets through a few at a time).
    fn user(&self, w: usize) -> String {
        format!("{}-{w}", self.username)
    }

    /// A refresh token of a new family, scoped so that each rotation signs one access token.
    async fn new_family(&self, w: usize) -> Option<String> {
        let user = self.user(w);
        let form = [
            ("grant_type", "password"),
            ("username", user.as_str()),
            ("password", self.password.as_str()),
            ("scope", "offline_access api:read"),
        ];
        let body = self.token(&form).await.1?;
        body["refresh_token"].as_str().map(str::to_owned)
    }

    /// One hosted sign-in: the form (for its CSRF cookie and token), then the timed POST.
    async fn sign_in(&self, w: usize) -> (bool, Duration) {
        let user = self.user(w);
        let Ok(form) = self.http.get(format!("{}/signin", self.base)).send().await else {
            return (false, Duration::ZERO);
        };
        let cookies: Vec<String> = form
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| Some(v.to_str().ok()?.split(';').next()?.to_owned()))
            .collect();
        let html = form.text().await.unwrap_or_default();
        let Some(csrf) = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            return (false, Duration::ZERO);
        };
        let start = Instant::now();
        let resp = self
            .http
            .post(format!("{}/signin", self.base))
            .header(reqwest::header::COOKIE, cookies.join("; "))
            .form(&[
                ("csrf", csrf),
                ("username", user.as_str()),
                ("password", self.password.as_str()),
            ])
            .send()
            .await;
        let took = start.elapsed();
        let ok = resp.is_ok_and(|r| r.status().as_u16() == 303);
        (ok, took)
    }
}

/// What a scenario measured.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    ok: usize,
    failed: usize,
    wall: f64,
    server_cpu: f64,
    pg_cpu: f64,
    statements: Option<f64>,
    rss_end_kib: u64,
    rss_peak_kib: u64,
}

impl Outcome {
    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let n = self.latencies.len();
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n.max(1)) - 1;
        self.latencies
            .get(i)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn cpu_ms_per_request(&self) -> f64 {
        1000.0 * (self.server_cpu + self.pg_cpu) / self.ok.max(1) as f64
    }

    /// Prints the scenario's row; returns its share of `limit` (requests per server CPU-second
    /// over the limit's operations per CPU-second).
    fn row(&mut self, name: &str, limit: Option<(&str, f64)>) -> Option<f64> {
        let cpu = (self.server_cpu + self.pg_cpu).max(0.01);
        let per_cpu_s = self.ok as f64 / cpu;
        let share = limit.map(|(_, rate)| per_cpu_s / rate);
        let statements = self.statements.map_or_else(
            || "-".to_owned(),
            |s| format!("{:.2}", s / self.ok.max(1) as f64),
        );
        let (limit_rate, share_text) = match (limit, share) {
            (Some((what, rate)), Some(share)) => (
                format!("{rate:.0} ({what})"),
                format!("**{:.0}%**", 100.0 * share),
            ),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.2} ({:.0}% PostgreSQL) | {statements} | \
             {per_cpu_s:.0} | {limit_rate} | {share_text} | {:.1} | {} |",
            self.ok as f64 / self.wall,
            self.percentile(0.50),
            self.percentile(0.99),
            self.cpu_ms_per_request(),
            100.0 * self.pg_cpu / cpu,
            self.rss_peak_kib as f64 / 1024.0,
            self.failed,
        );
        share
    }
}

/// Rounds of the token scenarios.
const ROUNDS: usize = 3;
/// Their rows' names.
const ROUND_NAMES: [[&str; ROUNDS]; 2] = [
    [
        "client_credentials #1",
        "client_credentials #2",
        "client_credentials #3",
    ],
    [
        "refresh_token, rotating #1",
        "refresh_token, rotating #2",
        "refresh_token, rotating #3",
    ],
];

/// argon2id verifications per CPU-second on `core`: this program's `argon2` mode, pinned there.
fn argon2_rate_on(core: &str) -> f64 {
    let me = std::env::current_exe().expect("own path");
    let out = std::process::Command::new("taskset")
        .args(["-c", core])
        .arg(me)
        .arg("argon2")
        .output()
        .expect("argon2 measurement");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("argon2 rate")
}

/// RSA-2048 signatures per CPU-second on `core`, by `openssl speed` (which counts CPU time).
fn rsa_rate(core: &str) -> f64 {
    let out = std::process::Command::new("taskset")
        .args([
            "-c", core, "openssl", "speed", "-seconds", "2", "-mr", "rsa2048",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("openssl speed");
    // `+F2:bits:sign/s:verify/s` in openssl's machine-readable output.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("+F2:")?
                .split(':')
                .nth(2)?
                .trim()
                .parse()
                .ok()
        })
        .expect("openssl speed printed no RSA-2048 rate")
}

/// How a scenario ends: after a time, or after a number of successful requests.
#[derive(Clone, Copy)]
enum Stop {
    After(Duration),
    Count(usize),
}

/// One request in flight: whether it succeeded and how long it took.
type BoxStep = std::pin::Pin<Box<dyn std::future::Future<Output = (bool, Duration)> + Send>>;
/// One request of a scenario, given the worker's number.
type Step = Arc<dyn Fn(usize) -> BoxStep + Send + Sync>;

/// Runs `step` on [`IN_FLIGHT`] workers until `stop`, measuring the server meanwhile.
async fn scenario(target: &Target, server: u32, until: Stop, step: Step) -> Outcome {
    let statements_before = target.statements().await;
    reset_peak(server);
    let (server_before, pg_before) = cpu_now(server);
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let (step, done) = (Arc::clone(&step), Arc::clone(&done));
            tokio::spawn(async move {
                let mut mine = (Vec::new(), 0, 0);
                loop {
                    let more = match until {
                        Stop::After(d) => started.elapsed() < d,
                        Stop::Count(n) => done.fetch_add(1, Ordering::Relaxed) < n,
                    };
                    if !more {
                        return mine;
                    }
                    let (ok, took) = step(w).await;
                    mine.0.push(took);
                    if ok {
                        mine.1 += 1;
                    } else {
                        mine.2 += 1;
                    }
                }
            })
        })
        .collect();
    let mut out = Outcome::default();
    for w in workers {
        let (lat, ok, failed) = w.await.expect("worker");
        out.latencies.extend(lat);
        out.ok += ok;
        out.failed += failed;
    }
    out.wall = started.elapsed().as_secs_f64();
    let (server_after, pg_after) = cpu_now(server);
    out.server_cpu = server_after - server_before;
    out.pg_cpu = pg_after - pg_before;
    out.statements = match (statements_before, target.statements().await) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    (out.rss_end_kib, out.rss_peak_kib) = rss_kib(server);
    out
}

fn argon2_rate() -> f64 {
    let env = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let owasp = keyward::users::password::Argon2Settings::OWASP;
    let params = argon2::Params::new(
        env("KEYWARD_ARGON2_MEMORY_KIB", owasp.memory_kib),
        env("KEYWARD_ARGON2_ITERATIONS", owasp.iterations),
        env("KEYWARD_ARGON2_PARALLELISM", owasp.parallelism),
        None,
    )
    .expect("argon2 parameters");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    // What a verification does at best: one hash of the candidate with the stored salt and
    // parameters, in memory allocated once.
    let mut memory = vec![argon2::Block::default(); argon2.params().block_count()];
    let mut hash = |argon2: &argon2::Argon2<'_>, out: &mut [u8; 32]| {
        argon2
            .hash_password_into_with_memory(
                b"correct horse battery",
                b"sixteen byte salt",
                out,
                &mut memory[..],
            )
            .expect("argon2");
    };
    hash(&argon2, &mut out);
    let me = std::process::id();
    let (start_cpu, started) = (cpu_seconds(me), Instant::now());
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        hash(&argon2, &mut out);
        n += 1;
    }
    f64::from(n) / (cpu_seconds(me) - start_cpu).max(0.01)
}

/// What `load run` was told.
struct Args {
    target: Target,
    server: u32,
    secs: Duration,
    sign_ins: usize,
    server_core: String,
}

fn parse_args(args: &[String]) -> Args {
    let [
        _run,
        base,
        metrics,
        server,
        id,
        secret,
        username,
        password,
        secs,
        sign_ins,
        server_core,
    ] = args
    else {
        eprintln!(
            "usage: load run BASE METRICS_BASE SERVER_PID CLIENT_ID SECRET USERNAME PASSWORD \
             SECONDS SIGN_INS SERVER_CORE | load argon2"
        );
        std::process::exit(2);
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("client");
    Args {
        target: Target {
            endpoint: Endpoint {
                http,
                base: base.clone(),
                id: id.clone(),
                secret: secret.clone(),
            },
            metrics: metrics.clone(),
            username: username.clone(),
            password: password.clone(),
        },
        server: server.parse().expect("pid"),
        secs: Duration::from_secs_f64(secs.parse().expect("seconds")),
        sign_ins: sign_ins.parse().expect("sign-ins"),
        server_core: server_core.clone(),
    }
}

/// A scenario's request: `request(target, worker)` says whether it succeeded; it is timed here.
fn step<F, Fut>(target: &Arc<Target>, request: F) -> Step
where
    F: Fn(Arc<Target>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let target = Arc::clone(target);
    let request = Arc::new(request);
    Arc::new(move |w| {
        let (target, request) = (Arc::clone(&target), Arc::clone(&request));
        Box::pin(async move {
            let start = Instant::now();
            let ok = request(target, w).await;
            (ok, start.elapsed())
        })
    })
}

/// One refresh family per worker; each rotation's successor is the next request's token, so
/// every token is presented exactly once.
type Families = Arc<Vec<std::sync::Mutex<String>>>;

fn rotate(target: &Arc<Target>, families: &Families) -> Step {
    let families = Arc::clone(families);
    step(target, move |t, w| {
        let families = Arc::clone(&families);
        async move {
            let token = families[w].lock().expect("lock").clone();
            let (status, body) = t
                .token(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                .await;
            let next = body.and_then(|b| b["refresh_token"].as_str().map(str::to_owned));
            match (status, next) {
                (Some(200), Some(next)) => {
                    *families[w].lock().expect("lock") = next;
                    true
                }
                _ => false,
            }
        }
    })
}

fn password_grant(target: &Arc<Target>) -> Step {
    step(target, |t, w| async move {
        let user = t.user(w);
        let form = [
            ("grant_type", "password"),
            ("username", user.as_str()),
            ("password", t.password.as_str()),
            ("scope", "api:read"),
        ];
        t.token(&form).await.0 == Some(200)
    })
}

/// Runs the scenarios whose name contains `only` (all when empty), printing a row each.
struct Runner {
    target: Arc<Target>,
    server: u32,
    only: String,
}

impl Runner {
    fn selects(&self, name: &str) -> bool {
        name.contains(self.only.as_str())
    }

    /// The scenario's share of `limit` (when it ran and has one) and its peak RSS in KiB.
    async fn run(
        &self,
        name: &str,
        step: Step,
        until: Stop,
        limit: Option<(&str, f64)>,
    ) -> (Option<f64>, u64) {
        if !self.selects(name) {
            return (None, 0);
        }
        let mut o = scenario(&self.target, self.server, until, step).await;
        (o.row(name, limit), o.rss_peak_kib)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The token scenarios in interleaved rounds, each next to a fresh measurement of the RSA limit
/// on the server's core: this machine is shared, and a ratio is only worth something when both
/// sides saw the same neighbours. Returns the median shares (client credentials, refresh).
async fn token_rounds(runner: &Runner, secs: Duration, core: &str) -> (f64, f64) {
    let target = &runner.target;
    let client_credentials = step(target, |t, _| async move {
        t.token(&[("grant_type", "client_credentials")]).await.0 == Some(200)
    });
    // Seeded just before their scenario, after client_credentials has been measured without
    // any password hashed yet.
    let families: Families = Arc::new(
        (0..IN_FLIGHT)
            .map(|_| std::sync::Mutex::default())
            .collect(),
    );
    let refresh = rotate(target, &families);
    let (mut cc_shares, mut refresh_shares) = (Vec::new(), Vec::new());
    for (round, (cc, rt)) in ROUND_NAMES[0].iter().zip(ROUND_NAMES[1]).enumerate() {
        let rsa = Some(("RSA-2048 sign", rsa_rate(core)));
        let after = Stop::After(secs);
        let (share, _) = runner
            .run(cc, Arc::clone(&client_credentials), after, rsa)
            .await;
        cc_shares.push(share.unwrap_or(0.0));
        if round == 0 && ROUND_NAMES[1].iter().any(|n| runner.selects(n)) {
            for (w, family) in families.iter().enumerate() {
                *family.lock().expect("lock") =
                    target.new_family(w).await.expect("a refresh token");
            }
        }
        let (share, _) = runner.run(rt, Arc::clone(&refresh), after, rsa).await;
        refresh_shares.push(share.unwrap_or(0.0));
    }
    (median(cc_shares), median(refresh_shares))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("argon2") {
        println!("{:.2}", argon2_rate());
        return;
    }
    let Args {
        target,
        server,
        secs,
        sign_ins,
        server_core,
    } = parse_args(&args);
    let target = Arc::new(target);
    // Warm up: connections, the first page render, the first signature.
    for path in ["/jwks.json", "/.well-known/openid-configuration", "/signin"] {
        target.get(path).await;
    }
    let (idle_rss, _) = rss_kib(server);
    println!(
        "| scenario | req/s | p50 ms | p99 ms | CPU ms/req (Keyward + PostgreSQL) | statements/req | \
         per CPU-second | limit per CPU-second | share of the limit | peak RSS MiB | failed |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // `BENCH_ONLY=client_credentials` (any part of a name) runs only what matches, to profile it.
    let runner = Runner {
        target: Arc::clone(&target),
        server,
        only: std::env::var("BENCH_ONLY").unwrap_or_default(),
    };
    let get = |path: &'static str| {
        step(&target, move |t, _| async move {
            t.get(path).await == Some(200)
        })
    };
    let after = Stop::After(secs);
    runner
        .run(
            "discovery",
            get("/.well-known/openid-configuration"),
            after,
            None,
        )
        .await;
    runner.run("JWKS", get("/jwks.json"), after, None).await;
    let (cc, refresh) = token_rounds(&runner, secs, &server_core).await;
    if !runner.only.is_empty() {
        // A selection (a profile, or bench.sh's round with a large table): the rows, and the
        // refresh share when it ran.
        if ROUND_NAMES[1].iter().any(|n| runner.selects(n)) {
            println!();
            println!(
                "Median share of the RSA sign limit over {ROUNDS} rounds: refresh_token \
                 **{:.0}%**.",
                100.0 * refresh
            );
        }
        return;
    }
    // argon2id's limit on the server's core, measured right before the scenarios it bounds.
    let argon2 = argon2_rate_on(&server_core);
    let argon2_limit = Some(("argon2id verify", argon2));
    runner
        .run(
            "password grant",
            password_grant(&target),
            after,
            argon2_limit,
        )
        .await;
    // Timed by itself: only the POST, not the form fetched before it.
    let sign_in: Step = {
        let target = Arc::clone(&target);
        Arc::new(move |w| {
            let t = Arc::clone(&target);
            Box::pin(async move { t.sign_in(w).await })
        })
    };
    let storm = Stop::Count(sign_ins);
    let (_, storm_peak) = runner
        .run("hosted sign-in POST (storm)", sign_in, storm, argon2_limit)
        .await;
    // Memory after the storm, once the hashing has stopped: what the process keeps.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (settled, _) = rss_kib(server);
    println!();
    println!(
        "Median share of the RSA sign limit over {ROUNDS} rounds: client_credentials **{:.0}%**, \
         refresh_token **{:.0}%**. Limits on the server's core, same run: RSA-2048 by `openssl \
         speed` before each round; argon2id {argon2:.1} verifications per CPU-second with the \
         configured parameters, before the password scenarios. Resident memory: {:.1} MiB idle \
         before the load, {:.1} MiB peak during the {sign_ins}-sign-in storm, {:.1} MiB two \
         seconds after it.",
        100.0 * cc,
        100.0 * refresh,
        idle_rss as f64 / 1024.0,
        storm_peak as f64 / 1024.0,
        settled as f64 / 1024.0,
    );
}
