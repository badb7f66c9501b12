//! Behaviour under stress and failure: database outages, slow clients, shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::proxy::DbProxy;
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, db};

async fn postgres_addr() -> std::net::SocketAddr {
    let url = db::base_url();
    let host = url.host_str().unwrap().to_owned();
    let port = url.port().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_gives_503_pages_and_the_service_recovers_by_itself() {
    let proxy = DbProxy::start(postgres_addr().await).await;
    let proxy_addr = proxy.addr;
    let app = TestApp::spawn_through(
        |db_name| {
            let mut url = db::base_url();
            url.set_port(Some(proxy_addr.port())).unwrap();
            url.set_host(Some("127.0.0.1")).unwrap();
            url.set_path(&format!("/{db_name}"));
            url.to_string()
        },
        &[],
    )
    .await;
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
    let fresh = app.new_browser().get("/signin").await;
    assert_eq!(fresh.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.come_back();
    assert_eq!(b.get("/readyz").await.status(), StatusCode::OK);
    assert_see_other(&b.sign_in("uma", GOOD_PASSWORD).await, "/account");
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
