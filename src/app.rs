//! The application: shared state, `App::build` (used by `main` and the tests alike) and the
//! server loop with header-read timeouts and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::{self, DbPool};
use crate::http::keep_alive::Watch;
use crate::keys::KeyManager;
use crate::keys::kek::Kek;
use crate::sessions::store::PgSessionStore;
use crate::users::password::PasswordHasher;

/// How often expired sessions, lockout rows and device records are deleted.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(300);
/// How often each instance looks for mail due in the outbox.
const MAIL_POLL: Duration = Duration::from_secs(1);
/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Cookie names and flags, derived from the issuer's scheme.
#[derive(Clone, Copy, Debug)]
pub struct CookieSettings {
    /// The session cookie.
    pub session: &'static str,
    /// The trusted-device cookie.
    pub device: &'static str,
    /// The CSRF cookie of visitors without a session.
    pub csrf: &'static str,
    /// The sealed pending sign-in of visitors without a session.
    pub pending: &'static str,
    /// The sealed passkey challenge of the sign-in page.
    pub passkey: &'static str,
    /// Whether cookies carry `Secure`.
    pub secure: bool,
}

impl CookieSettings {
    /// Over https, `__Host-` names pin cookies to our exact origin, path `/`, `Secure`.
    #[must_use]
    pub fn for_https(https: bool) -> Self {
        if https {
            Self {
                session: "__Host-keyward_session",
                device: "__Host-keyward_device",
                csrf: "__Host-keyward_csrf",
                pending: "__Host-keyward_pending",
                passkey: "__Host-keyward_passkey",
                secure: true,
            }
        } else {
            Self {
                session: "keyward_session",
                device: "keyward_device",
                csrf: "keyward_csrf",
                pending: "keyward_pending",
                passkey: "keyward_passkey",
                secure: false,
            }
        }
    }
}

/// Everything handlers share, built once. One `Arc`: every extractor and middleware clones the
/// state per request, and a single reference count is cheaper than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// The database pool.
    pub db: DbPool,
    /// Validated settings.
    pub config: Arc<Config>,
    /// Password hashing with its concurrency limit.
    pub hasher: PasswordHasher,
    /// The source of "now".
    pub clock: Clock,
    /// Cookie names and flags.
    pub cookies: CookieSettings,
    /// Signing keys and the JWKS.
    pub keys: KeyManager,
    /// The discovery documents, serialised once.
    pub discovery: crate::http::discovery::Documents,
    /// Refresh-token lifetimes, grace window and successor key.
    pub refresh: crate::tokens::refresh::RefreshPolicy,
    /// Gathers the rotations of current refresh tokens into shared statements.
    pub rotations: crate::tokens::rotations::Rotations,
    /// Rate limits, and the keys this instance knows to be blocked.
    pub limits: crate::rate_limits::Limits,
    /// Queues mail in the outbox and delivers it.
    pub courier: crate::mail::delivery::Courier,
    /// What every mail is signed with; the base of its links.
    pub letterhead: crate::mail::letters::Letterhead,
    /// How mailed codes are stored.
    pub codes: crate::users::codes::CodeKey,
    /// Issues and checks the sign-in page's proofs of work.
    pub proofs: crate::rate_limits::proof::ProofOfWork,
    /// The `WebAuthn` relying party; `None` when the issuer's host is an IP address.
    pub passkeys: Option<crate::oauth::passkeys::Passkeys>,
    /// Signs the CSRF tokens of visitors without a session.
    pub csrf: crate::http::csrf::VisitorCsrf,
    /// Seals the pending sign-ins of visitors without a session.
    pub pending: crate::http::pending::PendingSeal,
    /// Bounds on classes of database work, for shedding under overload.
    pub work: crate::http::shed::WorkClasses,
    /// The product name and logo of the hosted pages.
    pub brand: Arc<crate::http::brand::Brand>,
    /// This instance's Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The clients this instance has authenticated, forgotten when any changes.
    pub clients: crate::clients::cache::ClientCache,
}

impl AppState {
    /// A connection from the pool: the one way handlers reach the database.
    pub async fn conn(&self) -> Result<db::PooledConn, db::DbError> {
        db::connect(&self.db).await
    }

    /// What tokens presented to introspection and revocation are checked with.
    #[must_use]
    pub fn token_keys(&self) -> crate::oauth::introspection::TokenKeys<'_> {
        crate::oauth::introspection::TokenKeys {
            ring: &self.keys.ring,
            refresh: &self.refresh,
        }
    }

    /// What account mail (codes, notices) is sent with.
    #[must_use]
    pub fn account_mail(&self) -> crate::oauth::verification::AccountMail<'_> {
        crate::oauth::verification::AccountMail {
            outbox: self.courier.outbox(),
            letterhead: &self.letterhead,
            codes: &self.codes,
        }
    }

    /// What a sign-up is checked with and sends mail through.
    #[must_use]
    pub fn sign_up_context(&self) -> crate::oauth::sign_up::Context<'_> {
        crate::oauth::sign_up::Context {
            pool: &self.db,
            hasher: &self.hasher,
            limits: &self.limits,
            mail: self.account_mail(),
            policy: self.config.mail.verification,
        }
    }

    /// What a second factor typed at `ip` is checked with.
    #[must_use]
    pub fn factor_checks(
        &self,
        ip: std::net::IpAddr,
    ) -> crate::oauth::second_factor::FactorChecks<'_> {
        crate::oauth::second_factor::FactorChecks {
            pool: &self.db,
            kek: self.keys.kek(),
            lockout: self.config.passwords.lockout,
            mail: self.account_mail(),
            ip,
        }
    }

    /// What a sign-in from `ip` is checked with and counted against, page or password grant.
    #[must_use]
    pub fn sign_in_checks(&self, ip: std::net::IpAddr) -> crate::oauth::sign_in::Checks<'_> {
        crate::oauth::sign_in::Checks {
            pool: &self.db,
            hasher: &self.hasher,
            lockout: self.config.passwords.lockout,
            limits: &self.limits,
            proofs: &self.proofs,
            ip,
            metrics: &self.metrics,
            verification: self.config.mail.verification,
            identifiers: self.config.passwords.sign_in_identifier,
            mfa: self.config.passwords.mfa,
        }
    }
}

/// A built application, ready to serve.
pub struct App {
    state: AppState,
    router: Router,
}

impl App {
    /// Builds the state and router. The database may be down: connections are made on demand.
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let pool = open_pool(&config, &metrics)?;
        // Before anything is dated: keys, codes and sessions written by a skewed instance would
        // be judged by the others against another time.
        check_clock(&clock, &pool, config.server.max_clock_skew).await?;
        let hasher = start_hasher(&config).await?;
        // The KEK and keys come first: with a wrong KEK nothing else should start.
        let keys = start_keys(&pool, &config, &clock).await?;
        let clients = load_clients(&pool, &config).await?;
        let sessions = session_layer(&pool, &clock, &config);
        let shared = Shared {
            refresh: refresh_policy(&config, &keys),
            rotations: crate::tokens::rotations::Rotations::start(
                pool.clone(),
                rotation_statements(),
            ),
            limits: crate::rate_limits::Limits::new(config.limits, metrics.clone()),
            courier: start_courier(&config, keys.mail_secret(), &metrics)?,
            letterhead: letterhead(&config),
            codes: crate::users::codes::CodeKey::new(keys.code_secret()),
            proofs: crate::rate_limits::proof::ProofOfWork::new(
                keys.proof_secret(),
                config.passwords.sign_in_proof_bits,
            ),
            passkeys: url::Url::parse(config.server.issuer.as_str())
                .ok()
                .and_then(|issuer| {
                    crate::oauth::passkeys::Passkeys::new(&issuer, &config.server.product_name)
                }),
            csrf: crate::http::csrf::VisitorCsrf::new(keys.csrf_secret()),
            pending: {
                let cookies = CookieSettings::for_https(config.server.issuer.is_https());
                crate::http::pending::PendingSeal::new(
                    keys.pending_secret(),
                    cookies.pending,
                    cookies.secure,
                )
            },
            work: crate::http::shed::WorkClasses::new(
                config.database.pool_size,
                config.database.pool_wait,
            ),
            brand: Arc::new(crate::http::brand::Brand::load(
                &config.server.product_name,
                config.server.logo_file.as_deref(),
            )?),
            discovery: crate::http::discovery::Documents::new(config.server.issuer.as_str()),
            cookies: CookieSettings::for_https(config.server.issuer.is_https()),
            clients,
            metrics,
            db: pool,
            config: Arc::new(config),
            hasher,
            clock,
            keys,
        };
        let state = AppState(Arc::new(shared));
        let router = crate::http::router(state.clone(), sessions);
        Ok(Self { state, router })
    }

    /// The shared state (tests use it to reach the database and clock).
    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` (and `/metrics` on `metrics`, when given) until `shutdown`
    /// resolves, then lets open requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        // Ended with the server however it ends: also when the caller drops this future, or
        // they would run on (and poll a database that may be gone) for the process's life.
        let mut background = Background(vec![
            tokio::spawn(housekeeping(self.state.clone())),
            tokio::spawn(deliver_mail(self.state.clone())),
            tokio::spawn(follow_other_instances(self.state.clone())),
        ]);
        if let Some(l) = metrics {
            background
                .0
                .push(tokio::spawn(serve_metrics(self.state.clone(), l)));
        }

        let builder = connection_builder();
        let server = &self.state.config.server;
        let timeouts = (server.idle_timeout, server.header_timeout);

        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Usually out of file descriptors: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    self.spawn_connection(&builder, &graceful, stream, peer, timeouts);
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: waiting for open requests");
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish in time");
        }
        drop(background);
        Ok(())
    }
}

/// Tasks that live as long as the server: aborted when this is dropped.
struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The Prometheus listener: apart from the public one, so that it can stay on a private address.
async fn serve_metrics(state: AppState, listener: TcpListener) {
    if let Ok(at) = listener.local_addr() {
        tracing::info!(%at, "metrics at /metrics");
    }
    let router = crate::http::observe::metrics_router(state);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

/// The database pool, counting the statements it sends.
fn open_pool(config: &Config, metrics: &crate::metrics::Metrics) -> anyhow::Result<DbPool> {
    let database = &config.database;
    db::build_pool(
        &database.url,
        database.pool_size,
        database.pool_wait,
        Some(metrics.db_queries()),
    )
}

/// The password hasher's worker threads (each allocates its argon2 memory at its first hash).
async fn start_hasher(config: &Config) -> anyhow::Result<PasswordHasher> {
    let passwords = config.passwords;
    tokio::task::spawn_blocking(move || {
        PasswordHasher::new(
            passwords.argon2,
            passwords.hash_concurrency.get(),
            passwords.hash_queue.get(),
        )
    })
    .await?
}

/// Opens the KEK and the key store. A new KEK only for a new key store: one missing beside
/// existing keys is a mistake (another directory, a lost file), and a fresh one could never
/// open them.
async fn start_keys(pool: &DbPool, config: &Config, clock: &Clock) -> anyhow::Result<KeyManager> {
    let empty = {
        let mut conn = db::connect(pool).await?;
        crate::keys::store::list(&mut conn).await?.is_empty()
    };
    let kek = if empty {
        Kek::load_or_create(&config.keys.kek)?
    } else {
        Kek::load(&config.keys.kek)?
    };
    Ok(KeyManager::start(pool.clone(), kek, config.keys.policy, clock.clone()).await?)
}

/// The client cache, filled now: three missed checks in a row, and it is not trusted until the
/// next one.
async fn load_clients(
    pool: &DbPool,
    config: &Config,
) -> anyhow::Result<crate::clients::cache::ClientCache> {
    let mut conn = db::connect(pool).await?;
    Ok(crate::clients::cache::ClientCache::load(&mut conn, config.keys.reload * 3).await?)
}

/// Browser sessions in PostgreSQL, behind the session cookie.
fn session_layer(
    pool: &DbPool,
    clock: &Clock,
    config: &Config,
) -> SessionManagerLayer<PgSessionStore> {
    let lifetimes = config.sessions.lifetimes;
    let cookies = CookieSettings::for_https(config.server.issuer.is_https());
    let store = PgSessionStore::new(pool.clone(), clock.clone(), lifetimes);
    SessionManagerLayer::new(store)
        .with_name(cookies.session)
        .with_http_only(true)
        // Lax, not the default Strict: the browser must send the cookie when an app
        // redirects to /authorize, or single sign-on and prompt=none cannot work.
        .with_same_site(SameSite::Lax)
        .with_secure(cookies.secure)
        .with_path("/")
        // The cookie may outlive the idle time: the server enforces both lifetimes.
        .with_expiry(Expiry::OnInactivity(lifetimes.absolute))
}

/// How many statements of gathered refresh rotations may be out at once: one per four cores.
/// One at a time gathers the most rotations into each (a second one out would take the
/// rotations that would have joined the first); past a few cores the signing outpaces one.
fn rotation_statements() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(4))
}

/// Refresh-token lifetimes, grace window and the successor key.
fn refresh_policy(config: &Config, keys: &KeyManager) -> crate::tokens::refresh::RefreshPolicy {
    crate::tokens::refresh::RefreshPolicy {
        idle: config.tokens.refresh_idle_ttl,
        absolute: config.tokens.refresh_absolute_ttl,
        grace: config.tokens.refresh_reuse_grace,
        secret: *keys.refresh_secret(),
        mac_key: *keys.refresh_mac_key(),
    }
}

impl App {
    /// Serves one accepted connection on its own task, closed by its [`Watch`] when idle too
    /// long or when a started head takes too long.
    fn spawn_connection(
        &self,
        builder: &Builder<TokioExecutor>,
        graceful: &GracefulShutdown,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        (idle, header): (Duration, Duration),
    ) {
        let watch = Watch::new(idle, header);
        let requests = watch.clone();
        let service = self
            .router
            .clone()
            .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            })
            .map_future(move |answer| {
                // Called once the head is complete; answered until the future ends.
                let in_flight = requests.request();
                async move {
                    let response = answer.await;
                    drop(in_flight);
                    response
                }
            });
        let io = TokioIo::new(watch.io(stream));
        let conn = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                // Idle too long, or a head too slow: dropping the connection closes it.
                () = watch.expired() => tracing::debug!("connection timed out"),
            }
        });
    }
}

/// Refuses to start when this instance's clock is more than `max` from the database's.
async fn check_clock(clock: &Clock, pool: &DbPool, max: time::Duration) -> anyhow::Result<()> {
    let offset = crate::clock::offset_from_database(clock, pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot compare the clock with the database's: {e}"))?;
    if offset.abs() > max {
        anyhow::bail!(
            "this machine's clock is {offset} from the database's (KEYWARD_MAX_CLOCK_SKEW is \
             {max}): synchronise it (NTP) before serving, or codes and sessions would expire at \
             the wrong time"
        );
    }
    Ok(())
}

/// HTTP/1 and HTTP/2 with timers. hyper's own header-read timer is off: it also runs while a
/// connection waits for its next request, so it would double as a short idle timeout; the
/// header and idle timeouts are `http::keep_alive`'s instead.
fn connection_builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        // A request head larger than this gets hyper's own 431; smaller ones are measured
        // against the real limits in `http::limits`.
        .max_buf_size(crate::http::size_limits::TRANSPORT_HEADERS_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(crate::http::size_limits::TRANSPORT_HEADERS_BYTES).unwrap_or(u32::MAX),
        );
    builder
}

/// Follows the other instances, every reload interval: completes the key schedule and picks up
/// their key changes, and forgets cached clients when any client changed.
async fn follow_other_instances(state: AppState) {
    let mut tick = tokio::time::interval(state.config.keys.reload);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate, and start() just did the work
    loop {
        tick.tick().await;
        maintain_keys(&state).await;
        forget_changed_clients(&state).await;
    }
}

/// Completes the key schedule and reloads keys another instance changed.
async fn maintain_keys(state: &AppState) {
    match state.keys.maintain().await {
        Ok(done) => {
            if done.reloaded {
                state.metrics.key_event("reloaded");
            }
            if done.scheduled {
                state.metrics.key_event("scheduled");
            }
        }
        Err(e) => {
            state.metrics.key_event("maintenance_failed");
            tracing::warn!(error = %e, "signing key maintenance failed");
        }
    }
}

/// Forgets the cached clients when any client changed (on any instance).
async fn forget_changed_clients(state: &AppState) {
    let forgot = match state.conn().await {
        Ok(mut conn) => state
            .clients
            .refresh(&mut conn)
            .await
            .map_err(db::DbError::from),
        Err(e) => Err(e),
    };
    match forgot {
        Ok(true) => tracing::debug!("clients changed: cached clients forgotten"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not check clients for changes"),
    }
}

/// Deletes what has expired, every few minutes, forever.
/// The mail courier: the configured transport, opened once (a mail directory is created now).
pub fn start_courier(
    config: &Config,
    mail_secret: &[u8; 32],
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<crate::mail::delivery::Courier> {
    let mail = &config.mail;
    let transport =
        crate::mail::transport::Transport::open(&mail.route).map_err(anyhow::Error::msg)?;
    Ok(crate::mail::delivery::Courier::new(
        crate::mail::outbox::Outbox::new(mail_secret),
        transport,
        mail.from.clone(),
        mail.retry_for,
        metrics.clone(),
    ))
}

/// What every mail is signed with.
#[must_use]
pub fn letterhead(config: &Config) -> crate::mail::letters::Letterhead {
    crate::mail::letters::Letterhead {
        product: config.server.product_name.clone(),
        issuer: config.server.issuer.as_str().to_owned(),
    }
}

/// Resolves password reset requests and delivers the outbox: every instance, every
/// [`MAIL_POLL`], as long as letters are due.
async fn deliver_mail(state: AppState) {
    let mut tick = tokio::time::interval(MAIL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Reset requests first: the codes they mail are then delivered in the same round.
        let (mail, limits) = (state.account_mail(), &state.limits);
        let now = state.clock.now();
        let resolved = crate::oauth::recovery::resolve_requests(&state.db, mail, limits, now);
        if let Err(e) = resolved.await {
            tracing::warn!(error = %e, "password reset requests could not be resolved");
        }
        loop {
            match state
                .courier
                .deliver_due(&state.db, state.clock.now())
                .await
            {
                Ok(round) if round.more_due() => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "mail delivery failed");
                    break;
                }
            }
        }
        let measured = state.courier.measure_backlog(&state.db, state.clock.now());
        if let Err(e) = measured.await {
            tracing::debug!(error = %e, "could not measure the mail backlog");
        }
    }
}

async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let longest = state.config.tokens.access_ttl;
    loop {
        tick.tick().await;
        let Ok(mut conn) = state.conn().await else {
            continue;
        };
        match crate::housekeeping::purge(&mut conn, state.clock.now(), longest).await {
            Ok(p) if p.total() > 0 => tracing::info!(?p, "expired rows deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}
