//! The authorization code flow over real HTTP, every step and every refusal, with tokens checked
//! by an independent JWT implementation against the JWKS fetched over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

use crate::support::jwt::verify_with_jwks;
use crate::support::oauth::{
    ClientSpec, Pkce, REDIRECT_URI, TestClient, assert_oauth_error, callback_params, claims_of,
    param,
};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, csrf_of, location};

async fn signed_up(app: &TestApp) -> uuid::Uuid {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let user = app.create_user("alice", GOOD_PASSWORD).await;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    diesel::update(keyward::db::schema::users::table.find(user.id))
        .set(keyward::db::schema::users::email.eq("alice@example.com"))
        .execute(&mut conn)
        .await
        .unwrap();
    user.id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confidential_client_completes_the_code_flow_with_pkce() {
    let app = TestApp::spawn().await;
    let user_id = signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();

    let code = app.code_for(&client, &pkce, &[]).await;
    let resp = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "email openid profile");
    assert!(body.get("refresh_token").is_none());

    // RFC 9068 access token, checked independently.
    let access = body["access_token"].as_str().unwrap();
    let (header, at) = verify_with_jwks(&app, access, Some(&app.base))
        .await
        .unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(at["sub"], user_id.to_string());
    assert_eq!(at["client_id"], "webapp");
    assert_eq!(at["scope"], "email openid profile");
    assert!(at["jti"].as_str().is_some() && at["iat"].is_i64() && at["auth_time"].is_i64());
    assert_eq!(
        at["exp"].as_i64().unwrap() - at["iat"].as_i64().unwrap(),
        600
    );
    assert!(at.get("roles").is_none(), "no roles, no claim");

    // OIDC ID token, checked independently.
    let id_token = body["id_token"].as_str().unwrap();
    let (_, id) = verify_with_jwks(&app, id_token, Some("webapp"))
        .await
        .unwrap();
    assert_eq!(id["sub"], user_id.to_string());
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["at_hash"], keyward::tokens::jwt::at_hash(access));
    assert_eq!(id["auth_time"], at["auth_time"]);
    assert!(id["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], false);
    assert_ne!(id["sub"], "alice", "sub is stable, not the username");

    // userinfo with the access token.
    let info = app.userinfo(access).await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.unwrap();
    assert_eq!(
        info,
        json!({"sub": user_id.to_string(), "preferred_username": "alice", "name": "alice",
               "email": "alice@example.com", "email_verified": false})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_client_completes_the_flow_without_a_secret() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app
        .register_client(
            "spa",
            ClientSpec {
                public: true,
                scopes: "openid",
                ..ClientSpec::default()
            },
        )
        .await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[("scope", "openid")]).await;
    let resp = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let id = claims_of(body["id_token"].as_str().unwrap());
    assert!(
        id.get("preferred_username").is_none(),
        "no profile scope, no profile claims"
    );
    assert!(id.get("email").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_works_and_two_methods_at_once_do_not() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("poster", ClientSpec::default()).await;
    let secret = client.secret.clone().unwrap();
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", pkce.verifier.as_str()),
        ("client_id", "poster"),
        ("client_secret", secret.as_str()),
    ];
    let both = app
        .browser
        .client
        .post(format!("{}/token", app.base))
        .basic_auth("poster", Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_oauth_error(both, "invalid_request").await;
    let post = app
        .browser
        .client
        .post(format!("{}/token", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_invalid_client_with_a_challenge() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let impostor = TestClient {
        id: "webapp".into(),
        secret: Some("kwcs_not-the-secret".into()),
    };
    let resp = app.exchange_code(&impostor, &code, &pkce.verifier).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    assert_oauth_error(resp, "invalid_client").await;
    // A confidential client that sends no secret at all is refused too.
    let anonymous = TestClient {
        id: "webapp".into(),
        secret: None,
    };
    let resp = app.exchange_code(&anonymous, &code, &pkce.verifier).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The failed attempts did not burn the code for the real client.
    assert_eq!(
        app.exchange_code(&client, &code, &pkce.verifier)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_clients_and_unregistered_redirect_uris_get_a_page_never_a_redirect() {
    let app = TestApp::spawn().await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let ghost = TestClient {
        id: "ghost".into(),
        secret: None,
    };
    for url in [
        app.authorize_url(&ghost, &pkce, &[]),
        app.authorize_url(
            &client,
            &pkce,
            &[("redirect_uri", "https://app.example.com/callback/")],
        ),
        app.authorize_url(
            &client,
            &pkce,
            &[("redirect_uri", "https://evil.example/callback")],
        ),
        app.authorize_url(&client, &pkce, &[("redirect_uri", "")]),
        format!("{}&client_id=other", app.authorize_url(&client, &pkce, &[])),
    ] {
        let resp = app.browser.get(&url).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(resp.headers().get("location").is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("This sign-in link is not valid"), "{html}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_go_back_to_the_client_with_the_rfc_error() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("code_challenge", "")], "invalid_request"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge_method", "")], "invalid_request"),
        (&[("scope", "openid admin")], "invalid_scope"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (
            &[("resource", "https://not-allowed.example")],
            "invalid_target",
        ),
        (&[("prompt", "none")], "login_required"),
    ];
    for (extra, error) in cases {
        let resp = app
            .browser
            .get(&app.authorize_url(&client, &pkce, extra))
            .await;
        let params = callback_params(&resp);
        assert_eq!(param(&params, "error"), Some(*error), "{extra:?}");
        assert_eq!(param(&params, "state"), Some("st-123"));
        assert_eq!(param(&params, "iss"), Some(app.base.as_str()));
        assert!(param(&params, "code").is_none());
    }
    // A public client without PKCE has nothing binding its code: refused the same way.
    let spa = app.register_spa().await;
    let resp = app
        .browser
        .get(&app.authorize_url(&spa, &pkce, &[("code_challenge", "")]))
        .await;
    assert_eq!(
        param(&callback_params(&resp), "error"),
        Some("invalid_request")
    );
    let dup = format!("{}&scope=openid", app.authorize_url(&client, &pkce, &[]));
    let params = callback_params(&app.browser.get(&dup).await);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_answers_access_denied_and_allow_is_remembered() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[]);
    let resp = app
        .browser
        .authorize(&url, "alice", GOOD_PASSWORD, false)
        .await;
    let params = callback_params(&resp);
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert_eq!(param(&params, "state"), Some("st-123"));

    // Allow once; the next request for the same scopes skips the page.
    app.code_for(&client, &pkce, &[]).await;
    let again = app.browser.get(&url).await;
    assert!(
        param(&callback_params(&again), "code").is_some(),
        "no consent page the second time"
    );
    // More scopes than granted, or prompt=consent, ask again.
    let more = app
        .browser
        .get(&app.authorize_url(&client, &pkce, &[("prompt", "consent")]))
        .await;
    assert!(location(&more).starts_with("/consent?request="));
    // prompt=none when consent is needed: consent_required.
    let other = app.register_client("other", ClientSpec::default()).await;
    let resp = app
        .browser
        .get(&app.authorize_url(&other, &pkce, &[("prompt", "none")]))
        .await;
    assert_eq!(
        param(&callback_params(&resp), "error"),
        Some("consent_required")
    );

    // The account page lists the consent and can withdraw it.
    let account = app.browser.get("/account").await.text().await.unwrap();
    assert!(account.contains("webapp app"));
    let revoke = app
        .browser
        .post_form(
            "/account/consents/revoke",
            &[("csrf", &csrf_of(&account)), ("client_id", "webapp")],
        )
        .await;
    assert_see_other(&revoke, "/account");
    let after = app.browser.get(&url).await;
    assert!(
        location(&after).starts_with("/consent?request="),
        "asked again after revocation"
    );
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "consent.revoked", 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].client_id.as_deref(), Some("webapp"));
    assert_eq!(
        keyward::audit::find_by_kind(&mut conn, "consent.granted", 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_party_clients_skip_consent() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app
        .register_client(
            "portal",
            ClientSpec {
                first_party: true,
                ..ClientSpec::default()
            },
        )
        .await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[]);
    let resp = app
        .browser
        .authorize(&url, "alice", GOOD_PASSWORD, false)
        .await;
    assert!(
        param(&callback_params(&resp), "code").is_some(),
        "no consent page, so no deny"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let first: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status(), StatusCode::OK);

    let replay = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_oauth_error(replay, "invalid_grant").await;
    let refused = app.userinfo(access).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "code.reused", 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].client_id.as_deref(), Some("webapp"));
}

/// A signed-up alice and a registered confidential client.
async fn app_with_client() -> (TestApp, TestClient) {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    (app, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_expires_after_sixty_seconds() {
    let (app, client) = app_with_client().await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    app.clock().advance(Duration::seconds(61));
    let expired = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_oauth_error(expired, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_verifier_is_refused_and_spends_the_code() {
    let (app, client) = app_with_client().await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let wrong = Pkce::new();
    let resp = app.exchange_code(&client, &code, &wrong.verifier).await;
    assert_oauth_error(resp, "invalid_grant").await;
    // No guessing: the right verifier comes too late.
    let resp = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_oauth_error(resp, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_needs_the_redirect_uri_and_the_verifier_of_its_request() {
    let (app, client) = app_with_client().await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let other_redirect = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "https://app.example.com/other"),
        ("code_verifier", &pkce.verifier),
    ];
    let resp = app.token_request(&client, &other_redirect).await;
    assert_oauth_error(resp, "invalid_grant").await;

    let code = app.code_for(&client, &pkce, &[]).await;
    let no_verifier = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
    ];
    let resp = app.token_request(&client, &no_verifier).await;
    assert_oauth_error(resp, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_a_client_is_not_registered_for_or_we_do_not_know_are_refused() {
    let (app, client) = app_with_client().await;
    // The password grant exists but is off unless a client is registered for it.
    let password = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", GOOD_PASSWORD),
        ("scope", "openid"),
    ];
    let resp = app.token_request(&client, &password).await;
    assert_oauth_error(resp, "unauthorized_client").await;
    let device = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code")];
    let resp = app.token_request(&client, &device).await;
    assert_oauth_error(resp, "unsupported_grant_type").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_request_that_is_not_a_form_is_invalid() {
    let (app, _) = app_with_client().await;
    let json_body = app
        .browser
        .client
        .post(format!("{}/token", app.base))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(json_body, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_concurrent_redemptions_of_one_code_exactly_one_succeeds() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let attempts = (0..8).map(|_| app.exchange_code(&client, &code, &pkce.verifier));
    let results = crate::support::join_all(attempts).await;
    let ok = results
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    let refused = results
        .iter()
        .filter(|r| r.status() == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((ok, refused), (1, 7));
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_accepts_only_live_access_tokens() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let body: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let get = |auth: Option<String>| {
        let mut req = app.browser.client.get(format!("{}/userinfo", app.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { req.send().await.unwrap() }
    };
    let missing = get(None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"keyward\""
    );
    for bad in [
        format!("Bearer {}", body["id_token"].as_str().unwrap()),
        "Bearer not.a.jwt".to_owned(),
    ] {
        let resp = get(Some(bad)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // Expired access token.
    app.clock().advance(Duration::minutes(12));
    let resp = get(Some(format!(
        "Bearer {}",
        body["access_token"].as_str().unwrap()
    )))
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_s_tokens_stop_working_at_userinfo() {
    let app = TestApp::spawn().await;
    let user_id = signed_up(&app).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let body: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    keyward::users::update_disabled(
        &mut conn,
        user_id,
        &keyward::audit::Actor::cli(),
        app.clock().now(),
    )
    .await
    .unwrap();
    let resp = app.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_and_audiences_reach_the_access_token() {
    let app = TestApp::spawn().await;
    let user_id = signed_up(&app).await;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    keyward::users::update_roles(
        &mut conn,
        user_id,
        &keyward::users::name::Role::parse_all(&["admin", "billing"]).unwrap(),
        &keyward::audit::Actor::cli(),
        app.clock().now(),
    )
    .await
    .unwrap();
    let client = app
        .register_client(
            "webapp",
            ClientSpec {
                audiences: vec![
                    "https://api.example.com".into(),
                    "https://reports.example.com".into(),
                ],
                ..ClientSpec::default()
            },
        )
        .await;
    let pkce = Pkce::new();
    let code = app
        .code_for(
            &client,
            &pkce,
            &[("resource", "https://reports.example.com")],
        )
        .await;
    let body: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let (_, at) = verify_with_jwks(
        &app,
        body["access_token"].as_str().unwrap(),
        Some("https://reports.example.com"),
    )
    .await
    .unwrap();
    // The requested resource, and Keyward itself: `openid` was granted, so userinfo may serve it.
    assert_eq!(at["aud"], json!(["https://reports.example.com", app.base]));
    assert_eq!(at["roles"], json!(["admin", "billing"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_login_asks_for_the_password_again() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app
        .register_client(
            "portal",
            ClientSpec {
                first_party: true,
                ..ClientSpec::default()
            },
        )
        .await;
    let pkce = Pkce::new();
    app.code_for(&client, &pkce, &[]).await;
    let resp = app
        .browser
        .get(&app.authorize_url(
            &client,
            &pkce,
            &[("prompt", "login"), ("login_hint", "alice")],
        ))
        .await;
    assert_see_other(&resp, "/signin");
    let page = app.browser.get("/signin").await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the form, although signed in"
    );
    assert!(
        page.text().await.unwrap().contains("value=\"alice\""),
        "login_hint prefilled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_with_a_valid_hint_returns_to_a_registered_uri_only() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    let client = app
        .register_client(
            "webapp",
            ClientSpec {
                post_logout: vec!["https://app.example.com/bye".into()],
                ..ClientSpec::default()
            },
        )
        .await;
    let pkce = Pkce::new();
    let code = app.code_for(&client, &pkce, &[]).await;
    let body: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let hint = body["id_token"].as_str().unwrap();

    let unregistered = app
        .browser
        .get(&format!(
            "/logout?id_token_hint={hint}&post_logout_redirect_uri=https://evil.example/"
        ))
        .await;
    assert_eq!(unregistered.status(), StatusCode::BAD_REQUEST);
    assert!(unregistered.headers().get("location").is_none());
    assert_eq!(
        app.browser.get("/account").await.status(),
        StatusCode::OK,
        "still signed in"
    );

    let resp = app
        .browser
        .get(&format!("/logout?id_token_hint={hint}&post_logout_redirect_uri=https://app.example.com/bye&state=s1"))
        .await;
    assert_see_other(&resp, "https://app.example.com/bye?state=s1");
    assert_see_other(&app.browser.get("/account").await, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_without_a_hint_asks_first() {
    let app = TestApp::spawn().await;
    signed_up(&app).await;
    assert_see_other(
        &app.browser.sign_in("alice", GOOD_PASSWORD).await,
        "/account",
    );
    let page = app.browser.get("/logout").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign out of Keyward?"));
    assert_eq!(
        app.browser.get("/account").await.status(),
        StatusCode::OK,
        "a link alone signs nobody out"
    );
    assert_eq!(
        app.browser
            .post_form("/logout/confirm", &[("csrf", "forged")])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let resp = app
        .browser
        .post_form("/logout/confirm", &[("csrf", &csrf_of(&html))])
        .await;
    assert_see_other(&resp, "/signin?signed_out=1");
    assert_see_other(&app.browser.get("/account").await, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_lists_every_endpoint_and_nothing_more() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .browser
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    for (k, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("end_session_endpoint", "/logout"),
        ("jwks_uri", "/jwks.json"),
    ] {
        assert_eq!(doc[k], format!("{}{path}", app.base), "{k}");
        let status = app.browser.get(path).await.status();
        assert_ne!(status, StatusCode::NOT_FOUND, "{path} exists");
    }
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"]),
        "the password grant is opt-in per client, not advertised"
    );
    assert!(
        doc["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("roles"))
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    for (k, path) in [
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
    ] {
        assert_eq!(doc[k], format!("{}{path}", app.base), "{k}");
    }
    assert!(
        doc.get("registration_endpoint").is_none(),
        "no dynamic registration"
    );
    assert!(doc.get("device_authorization_endpoint").is_none());
}

/// Walks alice through `url` and returns the callback's parameters.
async fn callback_of(app: &TestApp, url: &str) -> Vec<(String, String)> {
    let resp = app
        .browser
        .authorize(url, "alice", GOOD_PASSWORD, true)
        .await;
    crate::support::oauth::callback_params(&resp)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confidential_client_registered_pkce_optional_may_send_a_nonce_instead() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        first_party: true,
        pkce_optional: true,
        ..ClientSpec::default()
    };
    let legacy = app.register_client("legacy", spec).await;
    let pkce = Pkce::new();
    let no_pkce = [("code_challenge", ""), ("code_challenge_method", "")];

    // Without PKCE, a nonce and openid are what bind the code (RFC 9700 §2.1.1).
    for (what, extra) in [
        ("no nonce", vec![("nonce", "")]),
        ("no openid", vec![("scope", "profile")]),
    ] {
        let mut params = no_pkce.to_vec();
        params.extend(extra);
        let callback = callback_of(&app, &app.authorize_url(&legacy, &pkce, &params)).await;
        assert_eq!(param(&callback, "error"), Some("invalid_request"), "{what}");
    }
    let callback = callback_of(&app, &app.authorize_url(&legacy, &pkce, &no_pkce)).await;
    let code = param(&callback, "code").expect("a code").to_owned();
    // A verifier for a code issued without a challenge is a downgrade attempt (RFC 9700 §4.8.2).
    let downgrade = app.exchange_code(&legacy, &code, &pkce.verifier).await;
    assert_oauth_error(downgrade, "invalid_grant").await;
    let callback = callback_of(&app, &app.authorize_url(&legacy, &pkce, &no_pkce)).await;
    let code = param(&callback, "code").expect("a code").to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
    ];
    let resp = app.token_request(&legacy, &form).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(
        claims_of(tokens["id_token"].as_str().unwrap())["nonce"],
        "n-456"
    );

    // With PKCE it is held to it: a code with a challenge needs its verifier.
    let callback = callback_of(&app, &app.authorize_url(&legacy, &pkce, &[])).await;
    let code = param(&callback, "code").expect("a code").to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
    ];
    assert_oauth_error(app.token_request(&legacy, &form).await, "invalid_grant").await;

    // Every other client: no challenge, no code; no verifier, invalid_request.
    let web = app
        .register_client(
            "web",
            ClientSpec {
                first_party: true,
                ..ClientSpec::default()
            },
        )
        .await;
    let callback = callback_of(&app, &app.authorize_url(&web, &pkce, &no_pkce)).await;
    assert_eq!(param(&callback, "error"), Some("invalid_request"));
    let callback = callback_of(&app, &app.authorize_url(&web, &pkce, &[])).await;
    let code = param(&callback, "code").expect("a code").to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
    ];
    assert_oauth_error(app.token_request(&web, &form).await, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pkce_optional_is_refused_for_a_public_client_and_shown_for_a_confidential_one() {
    let app = TestApp::spawn().await;
    let base = [
        "clients",
        "create",
        "--name",
        "Legacy",
        "--redirect-uri",
        "https://legacy.example/cb",
        "--pkce",
        "optional",
        "--json",
    ];
    let public = crate::support::cli::keyward(&app, &[&base[..], &["--public"]].concat(), "");
    assert!(!public.status.success());
    assert!(crate::support::cli::stderr(&public).contains("confidential clients only"));
    let ok = crate::support::cli::keyward(&app, &[&base[..], &["--id", "legacy"]].concat(), "");
    assert!(ok.status.success(), "{}", crate::support::cli::stderr(&ok));
    let shown: Value = serde_json::from_str(&crate::support::cli::stdout(&ok)).unwrap();
    assert_eq!(shown["pkce"], "optional");
    let back = crate::support::cli::keyward(
        &app,
        &[
            "clients", "update", "legacy", "--pkce", "required", "--json",
        ],
        "",
    );
    let shown: Value = serde_json::from_str(&crate::support::cli::stdout(&back)).unwrap();
    assert_eq!(shown["pkce"], "required");
}
