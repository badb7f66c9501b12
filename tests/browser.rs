//! The whole flow in a real headless Chromium: sign-up, authorize, sign-in, consent, the redirect
//! with a code, then the code exchange, for a confidential and a public client.

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::oauth::{ClientSpec, Pkce, TestClient};
use crate::support::webdriver::Chrome;
use crate::support::{GOOD_PASSWORD, TestApp};

/// A relying party's callback page on loopback.
async fn callback_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().route(
        "/callback",
        get(|| async { "Signed in. You can close this tab." }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://127.0.0.1:{port}/callback")
}

/// Where screenshots go: `docs/screenshots` when refreshing the README's pictures
/// (`KEYWARD_SCREENSHOTS=docs/screenshots make test`), else `target/screenshots`.
fn screenshot_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var("KEYWARD_SCREENSHOTS").unwrap_or_else(|_| "target/screenshots".into());
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(name)
}

async fn exchange(
    app: &TestApp,
    client: &TestClient,
    callback: &str,
    redirect: &str,
    pkce: &Pkce,
) -> Value {
    let url = url::Url::parse(callback).unwrap();
    let get = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(get("state").as_deref(), Some("st-123"));
    assert_eq!(get("iss").as_deref(), Some(app.base.as_str()));
    let code = get("code").expect("a code in the callback");
    let resp = app
        .token_request(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_signs_up_and_lets_two_apps_sign_them_in_in_a_real_browser() {
    let app = TestApp::spawn().await;
    let redirect = callback_server().await;
    let spec = |public| ClientSpec {
        public,
        redirect_uri: Some(redirect.clone()),
        ..ClientSpec::default()
    };
    let webapp = app.register_client("webapp", spec(false)).await;
    let spa = app.register_client("spa", spec(true)).await;
    let chrome = Chrome::start().await;

    // Sign up on the hosted page.
    chrome.goto(&format!("{}/signup", app.base)).await;
    chrome.type_into("#username", "grace").await;
    chrome.type_into("#email", "grace@example.com").await;
    chrome.type_into("#password", GOOD_PASSWORD).await;
    chrome.type_into("#password_confirm", GOOD_PASSWORD).await;
    chrome.click("button[type=submit]").await;
    chrome.wait_for_url(&format!("{}/account", app.base)).await;
    assert!(chrome.text().await.contains("You are signed in as grace"));
    chrome.click("form[action='/signout'] button").await;
    chrome.wait_for_url(&format!("{}/signin", app.base)).await;

    // The confidential app sends the browser to /authorize: sign in, then consent.
    let pkce = Pkce::new();
    let extra = [("redirect_uri", redirect.as_str())];
    chrome
        .goto(&format!(
            "{}{}",
            app.base,
            app.authorize_url(&webapp, &pkce, &extra)
        ))
        .await;
    chrome.wait_for_url(&format!("{}/signin", app.base)).await;
    chrome.screenshot(&screenshot_path("signin.png")).await;
    chrome.type_into("#username", "grace").await;
    chrome.type_into("#password", GOOD_PASSWORD).await;
    chrome.click("button[type=submit]").await;
    chrome.wait_for_url(&format!("{}/consent", app.base)).await;
    assert!(
        chrome
            .text()
            .await
            .contains("webapp app wants to access your account")
    );
    chrome.screenshot(&screenshot_path("consent.png")).await;
    chrome.click("button[value=allow]").await;
    let callback = chrome.wait_for_url(&redirect).await;
    assert!(chrome.text().await.contains("Signed in."));
    let tokens = exchange(&app, &webapp, &callback, &redirect, &pkce).await;
    assert!(tokens["id_token"].is_string());

    // The public app: already signed in, so only its consent page.
    let pkce = Pkce::new();
    chrome
        .goto(&format!(
            "{}{}",
            app.base,
            app.authorize_url(&spa, &pkce, &extra)
        ))
        .await;
    chrome.wait_for_url(&format!("{}/consent", app.base)).await;
    chrome.click("button[value=allow]").await;
    let callback = chrome.wait_for_url(&redirect).await;
    let tokens = exchange(&app, &spa, &callback, &redirect, &pkce).await;
    assert!(tokens["access_token"].is_string());
}
