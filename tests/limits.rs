//! Request size limits and transport headers: 431 for big headers, a 413 the client actually
//! reads, HSTS over https.

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestApp;

async fn get_with_headers(app: &TestApp, path: &str, headers: &[(&str, String)]) -> StatusCode {
    let mut req = app.browser.client.get(format!("{}{path}", app.base));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    req.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_over_16_kib_or_headers_over_32_kib_get_431() {
    let app = TestApp::spawn().await;
    let kib = |n: usize| "a".repeat(n * 1024);
    for path in ["/jwks.json", "/signin", "/authorize?client_id=x"] {
        assert_eq!(
            get_with_headers(&app, path, &[("x-big", kib(15))]).await,
            get_with_headers(&app, path, &[]).await,
            "{path}: a 15 KiB header is within the limit"
        );
        for size in [17, 64, 300] {
            assert_eq!(
                get_with_headers(&app, path, &[("x-big", kib(size))]).await,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{path}: a {size} KiB header"
            );
        }
        let many: Vec<_> = ["x-a", "x-b", "x-c"]
            .iter()
            .map(|n| (*n, kib(11)))
            .collect();
        assert_eq!(
            get_with_headers(&app, path, &many).await,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{path}: three 11 KiB headers"
        );
    }
    let cookie = format!("keyward_session={}", kib(20));
    assert_eq!(
        get_with_headers(&app, "/account", &[("cookie", cookie)]).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_every_response_carries_hsts_and_over_http_none() {
    let https = TestApp::spawn_with(&[("KEYWARD_ISSUER", "https://id.example.com")]).await;
    for path in ["/jwks.json", "/signin", "/no-such-page", "/healthz"] {
        let resp = https.browser.get(path).await;
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains",
            "{path}"
        );
    }
    let resp = https
        .browser
        .client
        .post(format!("{}/token", https.base))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("strict-transport-security"));

    let http = TestApp::spawn().await;
    let resp = http.browser.get("/signin").await;
    assert!(!resp.headers().contains_key("strict-transport-security"));
}

/// Sends `body` to `/token` the way a client library does (write it all, then read the answer),
/// and returns the response head, or why it could not be read.
async fn post_all_then_read(app: &TestApp, body: &[u8]) -> Result<String, String> {
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        app.addr,
        body.len()
    );
    conn.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("sending the head: {e}"))?;
    conn.write_all(body)
        .await
        .map_err(|e| format!("sending the body: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("reading the response: {e}")),
        }
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_still_sending_an_oversized_body_reads_its_413() {
    let app = TestApp::spawn().await;
    // 8 MB: more than loopback's socket buffers hold, so the server must read while we send.
    let body = vec![b'a'; 8 * 1024 * 1024];
    for round in 0..5 {
        let head = post_all_then_read(&app, &body)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(head.starts_with("HTTP/1.1 413"), "round {round}: {head}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_token_body_is_413_with_an_oauth_error() {
    let app = TestApp::spawn().await;
    let resp = app
        .browser
        .client
        .post(format!("{}/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&x={}",
            "a".repeat(100 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    // The connection was drained, so the same client goes on working.
    assert_eq!(app.browser.get("/healthz").await.status(), StatusCode::OK);
}
