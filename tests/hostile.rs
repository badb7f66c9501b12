//! Hostile bytes in every parameter of every endpoint get a 4xx in that endpoint's shape, never a
//! 500: NUL (PostgreSQL refuses it in text), invalid UTF-8, lone surrogates, control characters,
//! 10 KB values.

use base64::Engine as _;
use reqwest::StatusCode;

use crate::support::oauth::{ClientSpec, Pkce};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, csrf_of};

/// Percent-encoded hostile values (already encoded, so they reach the server byte for byte).
fn hostile() -> Vec<String> {
    vec![
        "%00".into(),
        "a%00b".into(),
        "%FF%FE".into(),
        "%ED%A0%80".into(),
        "%01%1B%7F".into(),
        "x".repeat(10 * 1024),
    ]
}

/// A form or query with `name` set to the raw (already encoded) `value`, and `base` for the rest.
fn with(base: &[(&str, &str)], name: &str, value: &str) -> String {
    let mut parts: Vec<String> = base
        .iter()
        .filter(|(k, _)| *k != name)
        .map(|(k, v)| {
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            format!("{k}={v}")
        })
        .collect();
    parts.push(format!("{name}={value}"));
    parts.join("&")
}

async fn post_form(
    app: &TestApp,
    path: &str,
    body: String,
    basic: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .browser
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(b) = basic {
        req = req.header("authorization", b);
    }
    req.send().await.unwrap()
}

/// Answered, not failed: a refusal (4xx), a redirect, or the answer the RFC gives an unknown
/// token (introspection's `active: false`, revocation's 200, logout's confirmation page).
fn assert_answered(resp: &reqwest::Response, what: &str) {
    let status = resp.status();
    assert!(!status.is_server_error(), "{what}: {status}");
}

/// A refusal in RFC 6749 §5.2 JSON.
async fn assert_oauth_refusal(resp: reqwest::Response, what: &str) {
    let status = resp.status();
    assert!(status.is_client_error(), "{what}: {status}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].is_string(), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_in_oauth_endpoint_parameters_are_refused_not_500() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let secret = client.secret.clone().unwrap();
    let token_base = [
        ("grant_type", "authorization_code"),
        ("code", "abc"),
        ("redirect_uri", "https://app.example.com/callback"),
        ("code_verifier", "v"),
        ("client_id", "webapp"),
        ("client_secret", secret.as_str()),
    ];
    let token_base_rt = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "kwrt_x"),
        ("client_id", "webapp"),
        ("client_secret", secret.as_str()),
    ];
    let client_base = [
        ("token", "t"),
        ("token_type_hint", "access_token"),
        ("client_id", "webapp"),
        ("client_secret", secret.as_str()),
    ];
    for value in hostile() {
        for base in [&token_base[..], &token_base_rt[..]] {
            for (name, _) in base {
                let resp = post_form(&app, "/token", with(base, name, &value), None).await;
                assert_oauth_refusal(resp, &format!("/token {name}={value:.12}")).await;
            }
        }
        for path in ["/introspect", "/revoke"] {
            for (name, _) in &client_base {
                let resp = post_form(&app, path, with(&client_base, name, &value), None).await;
                assert_answered(&resp, &format!("{path} {name}={value:.12}"));
            }
        }
        let resp = post_form(&app, "/userinfo", format!("access_token={value}"), None).await;
        assert_answered(&resp, &format!("/userinfo {value:.12}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bytes_in_basic_credentials_are_invalid_client_not_500() {
    let app = TestApp::spawn().await;
    for id in ["a\0b", "\u{1b}[0m", &"x".repeat(10 * 1024)] {
        let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{enc}:secret"))
        );
        for path in ["/token", "/introspect", "/revoke"] {
            let body = "grant_type=client_credentials&token=t".to_owned();
            let resp = post_form(&app, path, body, Some(&basic)).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {id:.8}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_in_page_parameters_are_refused_not_500() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[]);
    let query: Vec<(String, String)> = url::Url::parse(&format!("{}{url}", app.base))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let b = &app.browser;
    assert_see_other(&b.sign_in("alice", GOOD_PASSWORD).await, "/account");
    let csrf = csrf_of(&b.get("/account").await.text().await.unwrap());
    for value in hostile() {
        for (name, _) in &query {
            let q = with(&query, name, &value);
            let resp = b.get(&format!("/authorize?{q}")).await;
            assert_answered(&resp, &format!("GET /authorize {name}={value:.12}"));
            let resp = post_form(&app, "/authorize", q, None).await;
            assert_answered(&resp, &format!("POST /authorize {name}={value:.12}"));
        }
        for name in [
            "id_token_hint",
            "client_id",
            "post_logout_redirect_uri",
            "state",
        ] {
            let resp = b
                .get(&format!("/logout?{name}={value}&client_id=webapp"))
                .await;
            assert_answered(&resp, &format!("/logout {name}={value:.12}"));
        }
        let form = format!("csrf={csrf}&client_id={value}");
        let resp = post_form(&app, "/account/consents/revoke", form, None).await;
        assert_answered(&resp, &format!("consent revoke {value:.12}"));
        for path in ["/signin", "/signup"] {
            let form = format!("csrf={csrf}&username={value}&password={value}&email={value}");
            let resp = post_form(&app, path, form, None).await;
            assert_answered(&resp, &format!("{path} {value:.12}"));
        }
    }
}
