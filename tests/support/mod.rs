//! Test harness: the real app on a random port, a fresh database, and a browser-like client.

pub mod admin;
pub mod cli;
pub mod db;
pub mod endpoints;
pub mod jwt;
pub mod oauth;
pub mod proxy;
pub mod smtp;
pub mod totp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use keyward::app::{App, AppState};
use keyward::clock::Clock;
use keyward::config::Config;
use keyward::users::name::Username;
use keyward::users::{self, NewUser, User};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// A password that passes every rule.
pub const GOOD_PASSWORD: &str = "correct horse battery";

/// A running Keyward on its own database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's address.
    pub addr: SocketAddr,
    /// The app's shared state: its pool, clock and hasher.
    pub state: AppState,
    /// The default browser.
    pub browser: Browser,
    /// The settings the app was started with (the CLI tests reuse them).
    pub env: HashMap<&'static str, String>,
    /// `http://127.0.0.1:PORT` of its metrics listener (`GET /metrics`).
    pub metrics_base: String,
    db_name: String,
    /// Only the first instance on a database drops it.
    owns_db: bool,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A cookie-keeping HTTP client that never follows redirects: it sees what a relying party sees.
#[derive(Clone)]
pub struct Browser {
    /// The client.
    pub client: Client,
    /// Its cookies.
    pub jar: Arc<Jar>,
    base: String,
}

/// A fresh random key-encryption key, base64.
pub fn random_kek() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(keyward::crypto::random_bytes::<32>())
}

// Set while `TestApp::spawn_on_localhost` starts an app: its base names `localhost`.
tokio::task_local! {
    static LOCALHOST: bool;
}

/// Settings every test starts from: cheap argon2, the test database, its own KEK.
fn test_env(database_url: &str, issuer: &str) -> HashMap<&'static str, String> {
    HashMap::from([
        ("KEYWARD_KEK", random_kek()),
        ("KEYWARD_KEY_RELOAD", "1s".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("KEYWARD_ISSUER", issuer.to_owned()),
        ("KEYWARD_ARGON2_MEMORY_KIB", "64".to_owned()),
        ("KEYWARD_ARGON2_ITERATIONS", "1".to_owned()),
        ("KEYWARD_ARGON2_PARALLELISM", "1".to_owned()),
        ("KEYWARD_DB_POOL_SIZE", "8".to_owned()),
        // The manual clock stands still while the database's runs on: a slow test must not make
        // a later instance or /readyz refuse. The clock tests set their own bound.
        ("KEYWARD_MAX_CLOCK_SKEW", "1h".to_owned()),
        // Race tests release many requests at once on a small pool: on a busy machine they must
        // queue, not be shed. The shedding test sets its own short wait.
        ("KEYWARD_DB_POOL_WAIT", "30s".to_owned()),
        // Without an SMTP server, mail lands in files: one directory per test, not the repo's.
        ("KEYWARD_MAIL_DIR", mail_dir().display().to_string()),
    ])
}

/// A fresh directory for one test's mail files.
fn mail_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("keyward-mail-{}", uuid::Uuid::new_v4()))
}

impl TestApp {
    /// Starts the app with default test settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts the app with extra `KEYWARD_*` settings.
    pub async fn spawn_with(settings: &[(&'static str, &str)]) -> Self {
        let db_name = db::create_test_database().await;
        let database_url = db::url_for(&db_name);
        Self::spawn_on(db_name, database_url.clone(), database_url, settings, None).await
    }

    /// Starts the app with its issuer at `http://localhost:PORT`: `WebAuthn` takes a domain name
    /// as the relying party's id, never an address, so passkeys need one.
    pub async fn spawn_on_localhost(settings: &[(&'static str, &str)]) -> Self {
        let db_name = db::create_test_database().await;
        let url = db::url_for(&db_name);
        LOCALHOST
            .scope(
                true,
                Self::spawn_on(db_name, url.clone(), url, settings, None),
            )
            .await
    }

    /// Starts the app reaching its database through `app_database_url` (a proxy, say).
    pub async fn spawn_through(
        app_database_url: impl FnOnce(&str) -> String,
        settings: &[(&'static str, &str)],
    ) -> Self {
        let db_name = db::create_test_database().await;
        let database_url = db::url_for(&db_name);
        let via = app_database_url(&db_name);
        Self::spawn_on(db_name, database_url, via, settings, None).await
    }

    async fn spawn_on(
        db_name: String,
        database_url: String,
        app_database_url: String,
        settings: &[(&'static str, &str)],
        clock: Option<Clock>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a random port");
        let addr = listener.local_addr().expect("local address");
        let base = if LOCALHOST.try_with(|l| *l).unwrap_or(false) {
            format!("http://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        let mut env = test_env(&app_database_url, &base);
        for (k, v) in settings {
            env.insert(k, (*v).to_owned());
        }
        let config = Config::from_env(|name| env.get(name).cloned()).expect("valid test config");
        env.insert("DATABASE_URL", database_url.clone());
        if std::env::var_os("TEST_LOG").is_some() {
            keyward::telemetry::init("debug", keyward::telemetry::LogFormat::Text);
        }
        // Whole seconds: the database keeps microseconds and tests compare times.
        let start = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
            .expect("valid time");
        let clock = clock.unwrap_or_else(|| Clock::manual(start));
        let app = App::build(config, clock).await.expect("build app");
        let state = app.state().clone();
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a random port");
        let metrics_base = format!("http://{}", metrics_listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(async move {
            app.serve(listener, Some(metrics_listener), async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let browser = Browser::new(&base);
        Self {
            base,
            addr,
            state,
            browser,
            env,
            metrics_base,
            db_name,
            owns_db: true,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Another Keyward instance on the same database, with the same settings but for `overrides`.
    pub async fn another_instance(&self, overrides: &[(&'static str, &str)]) -> Self {
        let mut settings: Vec<(&'static str, &str)> =
            self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        settings.extend_from_slice(overrides);
        let url = self.env["DATABASE_URL"].clone();
        // The same clock: instances of one deployment agree on the time.
        let clock = Some(self.clock().clone());
        let mut other =
            Self::spawn_on(self.db_name.clone(), url.clone(), url, &settings, clock).await;
        other.owns_db = false;
        other
    }

    /// Builds (without serving) an app on this database with these overrides.
    pub async fn build_another(&self, overrides: &[(&'static str, &str)]) -> anyhow::Result<App> {
        let mut env = self.env.clone();
        for (k, v) in overrides {
            env.insert(k, (*v).to_owned());
        }
        let config = Config::from_env(|name| env.get(name).cloned())?;
        App::build(config, self.clock().clone()).await
    }

    /// A connection from the app's pool for a fixture, waiting while the app's own background
    /// work holds them all (tests with a tiny pool), never for a fixed time.
    pub async fn conn(&self) -> keyward::db::PooledConn {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match keyward::db::connect(&self.state.db).await {
                Ok(conn) => return conn,
                Err(keyward::db::DbError::Exhausted) if tokio::time::Instant::now() < deadline => {}
                Err(e) => panic!("connection: {e:?}"),
            }
        }
    }

    /// The text of `/metrics`, from the metrics listener.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The URL of this app's database.
    pub fn database_url(&self) -> &str {
        &self.env["DATABASE_URL"]
    }

    /// A user read back by username.
    pub async fn user_named(&self, name: &str) -> Option<User> {
        let username = Username::parse(name).expect("valid username");
        let mut conn = self.conn().await;
        users::find_by_username(&mut conn, &username)
            .await
            .expect("query")
    }

    /// A new browser signs `name` in with `good` and is refused with `bad`.
    pub async fn assert_signs_in_only_with(&self, name: &str, good: &str, bad: &str) {
        let fresh = self.new_browser();
        let refused = fresh.sign_in(name, bad).await;
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "{name} with {bad}"
        );
        assert_see_other(&fresh.sign_in(name, good).await, "/account");
    }

    /// A second, independent browser (its own cookies).
    pub fn new_browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// The app's clock, which only moves when a test moves it.
    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }

    /// Creates a user directly in the database (a fixture, not an HTTP step).
    pub async fn create_user(&self, username: &str, password: &str) -> User {
        let username = Username::parse(username).expect("valid username");
        let hash = self.state.hasher.hash(password).await.expect("hash");
        let mut conn = self.conn().await;
        users::insert(
            &mut conn,
            &NewUser::new(&username, None, &hash, self.clock().now()),
        )
        .await
        .expect("insert user")
    }

    /// The id of the user called `username`.
    pub async fn find_user_by_name(&self, username: &str) -> uuid::Uuid {
        self.find_user_named(username)
            .await
            .expect("user exists")
            .id
    }

    /// The user called `username`, if there is one.
    pub async fn find_user_named(&self, username: &str) -> Option<User> {
        let mut conn = self.conn().await;
        let name = Username::parse(username).expect("valid username");
        users::find_by_username(&mut conn, &name)
            .await
            .expect("query")
    }

    /// Reads a user back from the database.
    pub async fn find_user(&self, id: uuid::Uuid) -> Option<User> {
        let mut conn = self.conn().await;
        users::find(&mut conn, id).await.expect("query")
    }

    /// Stops the server and waits for it to finish its graceful shutdown.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if self.owns_db {
            db::drop_test_database(&self.db_name);
            let _ = std::fs::remove_dir_all(&self.env["KEYWARD_MAIL_DIR"]);
        }
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let jar = Arc::new(Jar::default());
        let client = Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(Policy::none())
            .build()
            .expect("client");
        Self {
            client,
            jar,
            base: base.to_owned(),
        }
    }

    /// `GET base + path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    /// `POST base + path` with a form body.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// Loads the page at `path` and returns the CSRF token of its form.
    pub async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status(), StatusCode::OK, "GET {path}");
        csrf_of(&page.text().await.expect("body"))
    }

    /// Signs in through the form; returns the response to the POST.
    pub async fn sign_in(&self, username: &str, password: &str) -> Response {
        let csrf = self.csrf("/signin").await;
        self.post_form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Signs in through the form, solving the proof of work the page asks for (as its script
    /// would); returns the response to the POST.
    pub async fn sign_in_with_proof(&self, username: &str, password: &str) -> Response {
        let page = self.get("/signin").await.text().await.expect("body");
        let challenge = hidden_field(&page, "proof_challenge").expect("the page asks for a proof");
        let counter = solve_proof(&challenge);
        self.post_form(
            "/signin",
            &[
                ("csrf", &csrf_of(&page)),
                ("username", username),
                ("password", password),
                ("proof_challenge", &challenge),
                ("proof", &counter),
            ],
        )
        .await
    }

    /// Signs up through the form; returns the response to the POST.
    pub async fn sign_up(&self, username: &str, email: &str, password: &str) -> Response {
        let csrf = self.csrf("/signup").await;
        self.post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("email", email),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await
    }

    /// Signs out through the account page's form; returns the response to the POST.
    pub async fn sign_out(&self) -> Response {
        let html = self
            .get("/account")
            .await
            .text()
            .await
            .expect("account page");
        self.post_form("/signout", &[("csrf", &csrf_of(&html))])
            .await
    }

    /// `GET path` from a fresh client that sends only `cookie` (a stolen or stale one, say).
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> Response {
        Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client")
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("GET")
    }

    /// The value of cookie `name` this browser would send.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = self.base.parse().expect("base URL");
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

/// The CSRF token in a page's form.
pub fn csrf_of(html: &str) -> String {
    hidden_field(html, "csrf").expect("page has a CSRF field")
}

/// The value of the form field `name` on a page, if it has one.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"').expect("closing quote");
    Some(html[start..start + len].to_owned())
}

/// Solves a sign-in page's proof of work as its script does, with OpenSSL's SHA-256 (not
/// Keyward's): the first counter whose hash of `challenge:counter` starts with the challenge's
/// number of zero bits.
pub fn solve_proof(challenge: &str) -> String {
    let bits: u32 = challenge.split('.').next().unwrap().parse().unwrap();
    (0..u64::MAX)
        .map(|n| n.to_string())
        .find(|n| {
            let hash = openssl::sha::sha256(format!("{challenge}:{n}").as_bytes());
            let leading = u128::from_be_bytes(hash[..16].try_into().unwrap()).leading_zeros();
            leading >= bits
        })
        .unwrap()
}

/// The `Location` of a redirect.
pub fn location(resp: &Response) -> &str {
    resp.headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ASCII location")
}

/// Asserts a 303 to `to`.
pub fn assert_see_other(resp: &Response, to: &str) {
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "expected 303 to {to}");
    assert_eq!(location(resp), to);
}

/// Drives all futures concurrently on this task and collects their outputs in order.
pub async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles = handles;
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (h, out) in handles.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match h.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("finished")).collect()
}

/// A free loopback port (bound and released; whatever is started on it takes it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `condition` until it holds. Waits for a condition, never for a duration: the deadline is
/// only a safety net against a test that would hang, far beyond any busy machine's delay.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
