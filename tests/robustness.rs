//! Behaviour under stress and failure: database outages, slow clients, shutdown.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::db::terminate_when_blocked;
use crate::support::oauth::{ClientSpec, Pkce, pending_request_of};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, csrf_of, location};

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_gives_503_pages_and_the_service_recovers_by_itself() {
    let (app, proxy) = TestApp::spawn_behind_proxy(&[]).await;
    app.create_user("uma", GOOD_PASSWORD).await;
    let b = &app.browser;
    assert_eq!(b.get("/readyz").await.status(), StatusCode::OK);
    let csrf = b.csrf("/signin").await;

    proxy.go_down();
    let ready = b.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        b.get("/healthz").await.status(),
        StatusCode::OK,
        "the process is still up"
    );
    let page = b
        .post_form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("username", "uma"),
                ("password", GOOD_PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.headers().contains_key("retry-after"));
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Temporarily unavailable")
    );
    // The bare form needs no database (its CSRF token is a signed cookie); what it sends does.
    let fresh = app.new_browser().get("/signin").await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let account = app
        .new_browser()
        .get_with_cookie("/account", "keyward_session=AAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(account.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.come_back();
    assert_eq!(b.get("/readyz").await.status(), StatusCode::OK);
    assert_see_other(&b.sign_in("uma", GOOD_PASSWORD).await, "/account");
}

/// A restart or failover ends every connection at once. Pooled connections are not checked
/// before each use any more, so the first request to find its connection gone may fail (503),
/// but that failure has every other connection checked: nothing after it fails.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_ending_every_pooled_connection_costs_at_most_one_request() {
    let app = TestApp::spawn().await;
    let url = &app.env["DATABASE_URL"];
    let mut admin = AsyncPgConnection::establish(url).await.unwrap();
    for _ in 0..10 {
        // Several connections in the pool, each used a moment ago.
        let ready = |_: u8| app.browser.get("/readyz");
        let (a, b, c, d) = tokio::join!(ready(0), ready(1), ready(2), ready(3));
        for r in [a, b, c, d] {
            assert_eq!(r.status(), StatusCode::OK);
        }
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .unwrap();
        let mut failed = 0;
        for _ in 0..12 {
            let resp = app.browser.get("/readyz").await;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::SERVICE_UNAVAILABLE => failed += 1,
                other => panic!("{other}"),
            }
        }
        assert!(
            failed <= 1,
            "{failed} requests failed after the connections ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = TestApp::spawn_with(&[("KEYWARD_HEADER_TIMEOUT", "1s")]).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /signin HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server must hang up (read returns EOF or an error) well before this bound.
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a 408 response before the close is fine
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "slowloris connection still open after 10s");
    // Normal clients are unaffected.
    assert_eq!(app.browser.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting_and_finishes() {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.browser.get("/healthz").await.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("graceful shutdown completes");
    assert!(
        app.browser
            .client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_form_bodies_get_a_page_not_a_500() {
    let app = TestApp::spawn().await;
    let resp = app
        .browser
        .client
        .post(format!("{}/signin", app.base))
        .header("content-type", "application/json")
        .body("{\"username\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("The form could not be read")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_hasher_answers_503_at_once_instead_of_queueing() {
    // One hashing slot, one queue place, and a deliberately slow hash (64 MiB, 3 passes).
    let app = TestApp::spawn_with(&[
        ("KEYWARD_HASH_CONCURRENCY", "1"),
        ("KEYWARD_HASH_QUEUE", "1"),
        ("KEYWARD_ARGON2_MEMORY_KIB", "65536"),
        ("KEYWARD_ARGON2_ITERATIONS", "3"),
    ])
    .await;
    let browsers: Vec<_> = (0..8).map(|_| app.new_browser()).collect();
    let mut forms = Vec::new();
    for b in &browsers {
        forms.push(b.csrf("/signin").await);
    }
    let attempts = browsers
        .iter()
        .zip(&forms)
        .enumerate()
        .map(|(i, (b, csrf))| {
            let user = format!("someone{i}");
            async move {
                b.post_form(
                    "/signin",
                    &[
                        ("csrf", csrf),
                        ("username", &user),
                        ("password", "whatever pw"),
                    ],
                )
                .await
            }
        });
    let responses = crate::support::join_all(attempts).await;
    let busy: Vec<_> = responses
        .iter()
        .filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !busy.is_empty(),
        "some attempts must be turned away while the one slot is taken"
    );
    for r in &busy {
        assert_eq!(r.headers()["retry-after"], "2");
    }
    assert!(
        responses
            .iter()
            .all(|r| r.status() == StatusCode::UNAUTHORIZED
                || r.status() == StatusCode::SERVICE_UNAVAILABLE),
        "nothing else"
    );
}

/// uma's password grant request.
const UMA_PASSWORD_GRANT: [(&str, &str); 4] = [
    ("grant_type", "password"),
    ("username", "uma"),
    ("password", GOOD_PASSWORD),
    ("scope", "openid"),
];

/// uma, and a client registered for the password grant.
async fn legacy_client_and_uma(app: &TestApp) -> crate::support::oauth::TestClient {
    app.create_user("uma", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        grants: vec!["password"],
        scopes: "openid",
        ..ClientSpec::default()
    };
    app.register_client("legacy", spec).await
}

/// Asserts the answer of a request made while the database was down: 503 with `Retry-After`.
fn assert_unavailable(resp: &reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_during_the_password_grant_is_a_503_in_json() {
    let (app, proxy) = TestApp::spawn_behind_proxy(&[]).await;
    let client = legacy_client_and_uma(&app).await;
    // Client authentication has read the client; the outage starts at the password check.
    proxy.go_down_at_query("\"sign_in_throttle\".\"locked_until\" FROM");
    let resp = app.token_request(&client, &UMA_PASSWORD_GRANT).await;
    assert_unavailable(&resp);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_during_sign_up_is_a_503_page() {
    let (app, proxy) = TestApp::spawn_behind_proxy(&[]).await;
    let csrf = app.browser.csrf("/signup").await;
    // The session has been read and the password hashed; the outage starts at the insert.
    proxy.go_down_at_query("INSERT INTO \"users\"");
    let resp = app
        .browser
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("username", "vera"),
                ("email", "vera@example.com"),
                ("password", GOOD_PASSWORD),
                ("password_confirm", GOOD_PASSWORD),
            ],
        )
        .await;
    assert_unavailable(&resp);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Temporarily unavailable")
    );
    proxy.come_back();
    assert!(
        app.find_user_named("vera").await.is_none(),
        "nothing half-written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_during_consent_is_a_503_page() {
    let (app, proxy) = TestApp::spawn_behind_proxy(&[]).await;
    app.create_user("uma", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let url = app.authorize_url(&client, &Pkce::new(), &[]);
    let b = &app.browser;
    assert_see_other(&b.sign_in("uma", GOOD_PASSWORD).await, "/account");
    let page = b.get(&url).await;
    let consent = location(&page).to_owned();
    assert!(consent.starts_with("/consent"), "{consent}");
    let html = b.get(&consent).await.text().await.unwrap();
    let request = pending_request_of(&html);
    // The session and the client have been read; the outage starts as the consent is stored.
    proxy.go_down_at_query("INSERT INTO \"consents\"");
    let resp = b
        .post_form(
            "/consent",
            &[
                ("csrf", &csrf_of(&html)),
                ("request", &request),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_unavailable(&resp);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Temporarily unavailable")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_ending_the_session_mid_sign_up_is_a_503_page() {
    let app = TestApp::spawn().await;
    let csrf = app.browser.csrf("/signup").await;
    let form = [
        ("csrf", csrf.as_str()),
        ("username", "vera"),
        ("email", "vera@example.com"),
        ("password", GOOD_PASSWORD),
        ("password_confirm", GOOD_PASSWORD),
    ];
    let url = &app.env["DATABASE_URL"];
    let resp = terminate_when_blocked(url, "users", app.browser.post_form("/signup", &form)).await;
    assert_unavailable(&resp);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Temporarily unavailable")
    );
    assert!(
        app.find_user_named("vera").await.is_none(),
        "nothing half-written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_ending_the_session_mid_consent_is_a_503_page() {
    let app = TestApp::spawn().await;
    app.create_user("uma", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let b = &app.browser;
    assert_see_other(&b.sign_in("uma", GOOD_PASSWORD).await, "/account");
    let page = b.get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    let html = b.get(location(&page)).await.text().await.unwrap();
    let request = pending_request_of(&html);
    let form = [
        ("csrf", csrf_of(&html)),
        ("request", request),
        ("decision", "allow".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = &app.env["DATABASE_URL"];
    let resp = terminate_when_blocked(url, "consents", b.post_form("/consent", &form)).await;
    assert_unavailable(&resp);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_ending_the_session_mid_password_grant_is_a_503_in_json() {
    let app = TestApp::spawn().await;
    let client = legacy_client_and_uma(&app).await;
    let url = &app.env["DATABASE_URL"];
    let request = app.token_request(&client, &UMA_PASSWORD_GRANT);
    let resp = terminate_when_blocked(url, "sign_in_throttle", request).await;
    assert_unavailable(&resp);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_migrating_one_fresh_database_together_all_come_up() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let name = format!("kwt_mig_{}", uuid::Uuid::new_v4().simple());
    let admin_url = crate::support::db::url_for("postgres");
    let mut admin = AsyncPgConnection::establish(&admin_url).await.unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = crate::support::db::url_for(&name);
    // Separate tasks, as separate instances would be: the harness blocks its task in place, and
    // three futures joined on one task stalled (the lock holder never got to migrate).
    let spawn = || {
        let url = url.clone();
        tokio::spawn(async move { keyward::db::run_migrations(&url).await })
    };
    let (a, b, c) = tokio::join!(spawn(), spawn(), spawn());
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let applied: Vec<usize> = [a, b, c]
        .into_iter()
        .map(|r| r.expect("migrates"))
        .collect();
    // One instance applied everything; the others found nothing left to do.
    assert_eq!(applied.iter().filter(|n| **n > 0).count(), 1, "{applied:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_clock_is_off_from_the_database_refuses_to_start() {
    let app = TestApp::spawn().await;
    let mut env = app.env.clone();
    env.insert("KEYWARD_MAX_CLOCK_SKEW", "5s".to_owned());
    let config = || keyward::config::Config::from_env(|n| env.get(n).cloned()).unwrap();
    // Five minutes behind, as the node that redeemed a 90-second-old code was.
    let behind =
        keyward::clock::Clock::manual(time::OffsetDateTime::now_utc() - time::Duration::minutes(5));
    let refused = keyward::app::App::build(config(), behind).await;
    let message = refused
        .err()
        .expect("a skewed instance must not start")
        .to_string();
    assert!(message.contains("clock"), "{message}");
    // The same settings with the machine's own clock (the database's, on this host) start.
    keyward::app::App::build(config(), keyward::clock::Clock::system())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_while_the_clock_is_off_from_the_database() {
    let app = TestApp::spawn().await;
    let ready = app.browser.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    app.clock().advance(time::Duration::hours(2));
    let skewed = app.browser.get("/readyz").await;
    assert_eq!(skewed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(skewed.text().await.unwrap().contains("clock"));
    app.clock().advance(-time::Duration::hours(2));
    assert_eq!(app.browser.get("/readyz").await.status(), StatusCode::OK);
}

/// Sends a keep-alive `GET /healthz` on `conn` and reads its whole response; `None` if the
/// server closed the connection instead.
async fn healthz_on(conn: &mut tokio::net::TcpStream) -> Option<String> {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if body.len() >= length {
            return Some(head.lines().next().unwrap_or_default().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_HEADER_TIMEOUT", "1s"),
        ("KEYWARD_IDLE_TIMEOUT", "1h"),
    ])
    .await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let first = healthz_on(&mut conn).await;
    assert_eq!(first.as_deref(), Some("HTTP/1.1 200 OK"));
    // Idle past the header timeout, as a proxy's pooled upstream connection is between
    // requests: hyper's header timer used to close it here, and the proxy's next request with it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = healthz_on(&mut conn).await;
    assert_eq!(
        second.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "reused after idling"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(&[("KEYWARD_IDLE_TIMEOUT", "1s")]).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(healthz_on(&mut conn).await.is_some());
    // The server hangs up by itself (EOF), well before this bound.
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection still open after 30s");
}
