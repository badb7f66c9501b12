//! What is ended stays ended: sign-out, password changes and disabling hold against requests that
//! were already in flight with the same cookie, released together, over many rounds.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;

use serde_json::Value;

use crate::support::oauth::{ClientSpec, Pkce, TestClient, assert_oauth_error};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, csrf_of, join_all, location};

/// Rounds per race, and requests writing the session in each: enough that the old upsert left
/// survivors in most rounds.
const ROUNDS: usize = 20;
const WRITERS: usize = 5;

/// How a round ends the session.
#[derive(Clone, Copy)]
enum Ending {
    SignOut,
    PasswordChange,
    Disable,
}

async fn session_rows_of(app: &TestApp, user_id: uuid::Uuid) -> i64 {
    use keyward::db::schema::sessions;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

/// Signs alice in on a fresh browser, then releases `WRITERS` session-writing requests
/// (`/authorize` with `prompt=consent` keeps the pending request in the session) together with
/// the ending; returns whether anything survived: a session row of alice's right after the race
/// (before any later request could notice the ending), or the old cookie opening the account.
async fn race_round(app: &TestApp, url: &str, ending: Ending, user_id: uuid::Uuid) -> bool {
    let b = app.new_browser();
    assert_see_other(&b.sign_in("alice", GOOD_PASSWORD).await, "/account");
    let cookie = format!("keyward_session={}", b.cookie("keyward_session").unwrap());
    let csrf = csrf_of(&b.get("/account").await.text().await.unwrap());
    let writers = (0..WRITERS).map(|_| {
        let b = b.clone();
        let (url, cookie) = (url.to_owned(), cookie.clone());
        Box::pin(async move {
            let resp = b.get_with_cookie(&url, &cookie).await;
            assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    });
    let writers: Vec<_> = writers.collect();
    let end = Box::pin(async move {
        match ending {
            // The person's own sign-out, with the same cookie as the writers.
            Ending::SignOut => {
                b.post_form("/signout", &[("csrf", &csrf)]).await;
            }
            other => cut_off(app, user_id, other).await,
        }
    }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
    join_all(writers.into_iter().chain(std::iter::once(end))).await;
    let rows_left = session_rows_of(app, user_id).await;
    let after = app.browser.get_with_cookie("/account", &cookie).await;
    rows_left > 0 || after.status() != StatusCode::SEE_OTHER || location(&after) != "/signin"
}

/// Runs `ROUNDS` races and counts the rounds where the session survived.
async fn survivors(ending: Ending) -> (usize, i64) {
    let app = TestApp::spawn().await;
    let user = app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    let url = app.authorize_url(&client, &Pkce::new(), &[("prompt", "consent")]);
    let mut survived = 0;
    for _ in 0..ROUNDS {
        if race_round(&app, &url, ending, user.id).await {
            survived += 1;
        }
        if !matches!(ending, Ending::SignOut) {
            // Restore alice for the next round: the old password, enabled.
            let hash = app.state.hasher.hash(GOOD_PASSWORD).await.unwrap();
            let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
            diesel::update(keyward::db::schema::users::table.find(user.id))
                .set((
                    keyward::db::schema::users::password_hash.eq(hash),
                    keyward::db::schema::users::disabled_at.eq(None::<time::OffsetDateTime>),
                ))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    (survived, session_rows_of(&app, user.id).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_racing_session_writes_leaves_no_session_behind() {
    assert_eq!(survivors(Ending::SignOut).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_racing_session_writes_leaves_no_session_behind() {
    assert_eq!(survivors(Ending::PasswordChange).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_user_racing_session_writes_leaves_no_session_behind() {
    assert_eq!(survivors(Ending::Disable).await, (0, 0));
}

/// A client that may refresh, and alice's tokens from one code flow (code kept for replays).
async fn code_flow_with_refresh(app: &TestApp) -> (TestClient, Pkce, String, Value) {
    app.create_user("alice", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        scopes: "openid offline_access",
        grants: vec!["authorization_code", "refresh_token"],
        ..ClientSpec::default()
    };
    let client = app.register_client("webapp", spec).await;
    let pkce = Pkce::new();
    let code = app
        .code_for(&client, &pkce, &[("scope", "openid offline_access")])
        .await;
    let resp = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: Value = resp.json().await.unwrap();
    (client, pkce, code, tokens)
}

async fn refresh_with(app: &TestApp, client: &TestClient, tokens: &Value) -> reqwest::Response {
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    app.token_request(client, &form).await
}

async fn userinfo_status(app: &TestApp, tokens: &Value) -> StatusCode {
    let access = tokens["access_token"].as_str().unwrap();
    app.userinfo(access).await.status()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_code_revokes_the_refresh_family_it_started_too() {
    let app = TestApp::spawn().await;
    let (client, pkce, code, tokens) = code_flow_with_refresh(&app).await;
    let replay = app.exchange_code(&client, &code, &pkce.verifier).await;
    assert_oauth_error(replay, "invalid_grant").await;
    assert_eq!(
        userinfo_status(&app, &tokens).await,
        StatusCode::UNAUTHORIZED
    );
    // RFC 6749 §4.1.2: everything the first use issued, not only the access token.
    assert_oauth_error(refresh_with(&app, &client, &tokens).await, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_without_the_verifier_or_redirect_uri_revokes_nothing() {
    let app = TestApp::spawn().await;
    let (client, pkce, code, tokens) = code_flow_with_refresh(&app).await;
    // Whoever saw the code but not the verifier cannot sign alice out with it.
    let guessed = app
        .exchange_code(&client, &code, &Pkce::new().verifier)
        .await;
    assert_oauth_error(guessed, "invalid_grant").await;
    let elsewhere = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example.com/other"),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    assert_oauth_error(
        app.token_request(&client, &elsewhere).await,
        "invalid_grant",
    )
    .await;
    assert_eq!(userinfo_status(&app, &tokens).await, StatusCode::OK);
    assert_eq!(
        refresh_with(&app, &client, &tokens).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_thirty_redemptions_racing_over_three_instances_one_wins_and_is_then_revoked() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        scopes: "openid offline_access",
        grants: vec!["authorization_code", "refresh_token"],
        ..ClientSpec::default()
    };
    let client = app.register_client("webapp", spec).await;
    let (b, c) = (
        app.another_instance(&[]).await,
        app.another_instance(&[]).await,
    );
    let instances = [&app, &b, &c];
    let pkce = Pkce::new();
    let code = app
        .code_for(&client, &pkce, &[("scope", "openid offline_access")])
        .await;
    let attempts = (0..30).map(|i| instances[i % 3].exchange_code(&client, &code, &pkce.verifier));
    let results = join_all(attempts).await;
    let mut winners = Vec::new();
    for r in results {
        match r.status() {
            StatusCode::OK => winners.push(r.json::<Value>().await.unwrap()),
            _ => {
                assert_oauth_error(r, "invalid_grant").await;
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption succeeds");
    // Every other redemption was a replay with the right verifier: the winner's tokens are dead.
    assert_eq!(
        userinfo_status(&app, &winners[0]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_oauth_error(
        refresh_with(&app, &client, &winners[0]).await,
        "invalid_grant",
    )
    .await;
}

/// Each way to cut a user off, run as an operator or the app would.
const CUT_OFFS: [Ending; 3] = [Ending::PasswordChange, Ending::Disable, Ending::SignOut];

/// Cuts alice off: a password change, disabling, or `users sign-out-everywhere` (for `SignOut`).
async fn cut_off(app: &TestApp, user_id: uuid::Uuid, ending: Ending) {
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let now = app.clock().now();
    match ending {
        Ending::PasswordChange => {
            let hash = app
                .state
                .hasher
                .hash("a brand new passphrase")
                .await
                .unwrap();
            keyward::users::update_password(
                &mut conn,
                user_id,
                &hash,
                &keyward::audit::Actor::cli(),
                now,
            )
            .await
            .unwrap();
        }
        Ending::Disable => {
            keyward::users::update_disabled(&mut conn, user_id, &keyward::audit::Actor::cli(), now)
                .await
                .unwrap();
        }
        Ending::SignOut => {
            let out =
                crate::support::cli::keyward(app, &["users", "sign-out-everywhere", "alice"], "");
            assert!(
                out.status.success(),
                "{}",
                crate::support::cli::stderr(&out)
            );
        }
    }
}

async fn introspected_active(app: &TestApp, client: &TestClient, token: &str) -> bool {
    app.introspect(client, token).await["active"] == true
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_issued_before_a_cut_off_cannot_be_redeemed_after_it() {
    for ending in CUT_OFFS {
        let app = TestApp::spawn().await;
        let user = app.create_user("alice", GOOD_PASSWORD).await;
        let client = app.register_client("webapp", ClientSpec::default()).await;
        let pkce = Pkce::new();
        let code = app.code_for(&client, &pkce, &[]).await;
        cut_off(&app, user.id, ending).await;
        let resp = app.exchange_code(&client, &code, &pkce.verifier).await;
        assert_oauth_error(resp, "invalid_grant").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_tokens_without_a_refresh_family_stop_working_at_a_cut_off() {
    for ending in CUT_OFFS {
        let app = TestApp::spawn().await;
        let user = app.create_user("alice", GOOD_PASSWORD).await;
        let client = app.register_client("webapp", ClientSpec::default()).await;
        // No offline_access: nothing but the access token carries this authorization.
        let tokens = app.tokens_for(&client, "openid profile").await;
        assert!(tokens.get("refresh_token").is_none());
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(userinfo_status(&app, &tokens).await, StatusCode::OK);
        assert!(introspected_active(&app, &client, access).await);
        cut_off(&app, user.id, ending).await;
        assert_eq!(
            userinfo_status(&app, &tokens).await,
            StatusCode::UNAUTHORIZED
        );
        assert!(!introspected_active(&app, &client, access).await);
    }
}

/// Puts the old password hash back for the next round (a fixture, not a cut-off: the version
/// stays bumped) and forgets the round's failed attempts.
async fn restore_password(app: &TestApp, user_id: uuid::Uuid, old_hash: &str) {
    use keyward::db::schema::{sign_in_throttle, users};
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    diesel::update(users::table.find(user_id))
        .set(users::password_hash.eq(old_hash))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::delete(sign_in_throttle::table)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Rounds of password grants (with the old password) released together with a password change.
#[tokio::test(flavor = "multi_thread")]
async fn password_grants_racing_a_password_change_leave_no_family_behind() {
    use keyward::db::schema::refresh_families;
    // Grants with the old password after the change are failures: twenty rounds of them must
    // not reach the lockout, which is tested on its own.
    let app = TestApp::spawn_with(&[("KEYWARD_LOCKOUT_THRESHOLD", "100")]).await;
    let user = app.create_user("alice", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        grants: vec!["password", "refresh_token"],
        scopes: "openid offline_access",
        ..ClientSpec::default()
    };
    let client = app.register_client("legacy", spec).await;
    let grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", GOOD_PASSWORD),
        ("scope", "openid offline_access"),
    ];
    let old_hash = app.find_user(user.id).await.unwrap().password_hash;
    let mut survivors = 0;
    for _ in 0..ROUNDS {
        let grants = (0..WRITERS).map(|_| {
            Box::pin(async {
                app.token_request(&client, &grant).await;
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>
        });
        let change = Box::pin(cut_off(&app, user.id, Ending::PasswordChange))
            as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
        join_all(grants.chain(std::iter::once(change))).await;
        let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
        let live: i64 = refresh_families::table
            .filter(refresh_families::user_id.eq(user.id))
            .filter(refresh_families::revoked_at.is_null())
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        survivors += live;
        restore_password(&app, user.id, &old_hash).await;
    }
    assert_eq!(
        survivors, 0,
        "families outlived the password they were granted on"
    );
}

/// Rounds of browser sign-ins (with the old password) released together with a password change.
#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_racing_a_password_change_leave_no_session_behind() {
    // As above: the old password's failures must not reach the lockout.
    let app = TestApp::spawn_with(&[("KEYWARD_LOCKOUT_THRESHOLD", "100")]).await;
    let user = app.create_user("alice", GOOD_PASSWORD).await;
    let old_hash = app.find_user(user.id).await.unwrap().password_hash;
    let mut survivors = 0;
    for _ in 0..ROUNDS {
        let browsers: Vec<_> = (0..WRITERS).map(|_| app.new_browser()).collect();
        let mut forms = Vec::new();
        for b in &browsers {
            forms.push(b.csrf("/signin").await);
        }
        let sign_ins = browsers.iter().zip(&forms).map(|(b, csrf)| {
            Box::pin(async move {
                let form = [
                    ("csrf", csrf.as_str()),
                    ("username", "alice"),
                    ("password", GOOD_PASSWORD),
                ];
                b.post_form("/signin", &form).await;
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>
        });
        let change = Box::pin(cut_off(&app, user.id, Ending::PasswordChange))
            as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
        join_all(sign_ins.chain(std::iter::once(change))).await;
        for b in &browsers {
            let page = b.get("/account").await;
            if page.status() == StatusCode::OK {
                survivors += 1;
            }
        }
        restore_password(&app, user.id, &old_hash).await;
    }
    assert_eq!(
        survivors, 0,
        "sessions outlived the password they signed in with"
    );
}

/// A confidential client `id` whose access tokens are for `audiences` only (no `openid`).
async fn api_client(app: &TestApp, id: &str, audiences: &[&str]) -> TestClient {
    let spec = ClientSpec {
        scopes: "invoices:read",
        grants: vec!["client_credentials"],
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        ..ClientSpec::default()
    };
    app.register_client(id, spec).await
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_refuses_a_token_minted_for_an_api() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        scopes: "openid invoices:read",
        audiences: vec!["https://api.example.com".into()],
        ..ClientSpec::default()
    };
    let client = app.register_client("webapp", spec).await;
    // Without openid the token is for the API alone.
    let for_api = app.tokens_for(&client, "invoices:read").await;
    assert_eq!(
        crate::support::oauth::claims_of(for_api["access_token"].as_str().unwrap())["aud"],
        "https://api.example.com"
    );
    assert_eq!(
        userinfo_status(&app, &for_api).await,
        StatusCode::UNAUTHORIZED
    );
    // With openid it names Keyward too, and userinfo serves it.
    let with_openid = app.tokens_for(&client, "openid invoices:read").await;
    assert_eq!(userinfo_status(&app, &with_openid).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_token_s_client_or_its_audience_may_introspect_it() {
    let app = TestApp::spawn().await;
    let billing = api_client(&app, "billing", &["https://api.example.com"]).await;
    let api = api_client(&app, "invoices-api", &["https://api.example.com"]).await;
    let stranger = api_client(&app, "stranger", &["https://other.example.com"]).await;
    let resp = app
        .token_request(&billing, &[("grant_type", "client_credentials")])
        .await;
    let token: Value = resp.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();
    assert!(
        introspected_active(&app, &billing, token).await,
        "its own client"
    );
    assert!(
        introspected_active(&app, &api, token).await,
        "the resource server it is for"
    );
    assert!(
        !introspected_active(&app, &stranger, token).await,
        "anyone else"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_access_token_lacking_sub_client_id_or_aud_is_not_active() {
    let app = TestApp::spawn().await;
    let client = api_client(&app, "billing", &["https://api.example.com"]).await;
    let now = app.clock().now();
    let complete = serde_json::json!({
        "iss": app.base, "sub": "billing", "aud": "https://api.example.com",
        "client_id": "billing", "scope": "invoices:read", "jti": uuid::Uuid::new_v4(),
        "iat": now.unix_timestamp(), "exp": now.unix_timestamp() + 300,
    });
    let sign = |claims: &Value| app.state.keys.ring.sign("at+jwt", claims, now).unwrap();
    assert!(introspected_active(&app, &client, &sign(&complete)).await);
    for missing in ["sub", "client_id", "aud"] {
        let mut claims = complete.clone();
        claims.as_object_mut().unwrap().remove(missing);
        assert!(
            !introspected_active(&app, &client, &sign(&claims)).await,
            "{missing}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_user_s_tokens_die_and_only_their_id_stays_in_the_audit_trail() {
    let app = TestApp::spawn().await;
    let (client, _, _, tokens) = code_flow_with_refresh(&app).await;
    let user_id = app.find_user_by_name("alice").await;
    let out = crate::support::cli::keyward(&app, &["users", "delete", "alice"], "");
    assert!(
        out.status.success(),
        "{}",
        crate::support::cli::stderr(&out)
    );
    assert!(app.find_user(user_id).await.is_none());
    assert_eq!(
        userinfo_status(&app, &tokens).await,
        StatusCode::UNAUTHORIZED
    );
    assert_oauth_error(refresh_with(&app, &client, &tokens).await, "invalid_grant").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(!introspected_active(&app, &client, access).await);
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "user.deleted", 5)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].user_id, Some(user_id));
    assert!(!events[0].details.to_string().contains("alice"));
    // The name is free again, for somebody new.
    app.create_user("alice", GOOD_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enabled_user_signs_in_again_but_nothing_from_before_comes_back() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let before = app.new_browser();
    assert_see_other(&before.sign_in("alice", GOOD_PASSWORD).await, "/account");
    for command in ["disable", "enable"] {
        let out = crate::support::cli::keyward(&app, &["users", command, "alice"], "");
        assert!(
            out.status.success(),
            "{}",
            crate::support::cli::stderr(&out)
        );
    }
    assert_see_other(&before.get("/account").await, "/signin");
    let again = app.new_browser();
    assert_see_other(&again.sign_in("alice", GOOD_PASSWORD).await, "/account");
}

#[tokio::test(flavor = "multi_thread")]
async fn withdrawing_consent_ends_the_client_s_codes_and_access_tokens_at_once() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    // No offline_access: no family, only an access token and a code not yet redeemed.
    let tokens = app.tokens_for(&client, "openid profile").await;
    let pkce = Pkce::new();
    let pending_code = app.code_for(&client, &pkce, &[]).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(introspected_active(&app, &client, access).await);

    let csrf = csrf_of(&app.browser.get("/account").await.text().await.unwrap());
    let withdraw = [("csrf", csrf.as_str()), ("client_id", "webapp")];
    let resp = app
        .browser
        .post_form("/account/consents/revoke", &withdraw)
        .await;
    assert_see_other(&resp, "/account");

    assert_eq!(
        userinfo_status(&app, &tokens).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!introspected_active(&app, &client, access).await);
    let late = app
        .exchange_code(&client, &pending_code, &pkce.verifier)
        .await;
    assert_oauth_error(late, "invalid_grant").await;
    // Alice herself is still signed in: only that app was cut off.
    assert_eq!(app.browser.get("/account").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consent_withdrawn_behind_a_proxy_is_audited_under_the_person_s_address() {
    use keyward::db::schema::audit_events;
    let app = TestApp::spawn_with(&[("KEYWARD_TRUSTED_PROXIES", "127.0.0.1, ::1")]).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", ClientSpec::default()).await;
    app.tokens_for(&client, "openid profile").await;
    let csrf = csrf_of(&app.browser.get("/account").await.text().await.unwrap());
    // The proxy (a trusted loopback peer) names the person's address.
    let resp = app
        .browser
        .client
        .post(format!("{}/account/consents/revoke", app.base))
        .header("x-forwarded-for", "203.0.113.7")
        .form(&[("csrf", csrf.as_str()), ("client_id", "webapp")])
        .send()
        .await
        .unwrap();
    assert_see_other(&resp, "/account");
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let ips: Vec<Option<ipnet::IpNet>> = audit_events::table
        .filter(audit_events::kind.eq("consent.revoked"))
        .select(audit_events::ip)
        .load(&mut conn)
        .await
        .unwrap();
    let expected: ipnet::IpNet = "203.0.113.7/32".parse().unwrap();
    assert_eq!(
        ips,
        [Some(expected)],
        "the forwarded address, not the proxy's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_client_ends_every_token_it_holds_at_once() {
    use keyward::db::schema::revoked_access_tokens;
    const API: &str = "https://api.example.com";
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let web = app
        .register_client("webapp", crate::support::endpoints::refreshing())
        .await;
    let tokens = app.tokens_for(&web, "openid offline_access").await;
    let access = tokens["access_token"].as_str().unwrap();
    let machine = ClientSpec {
        scopes: "invoices:read",
        grants: vec!["client_credentials"],
        audiences: vec![API.into()],
        ..ClientSpec::default()
    };
    let billing = app.register_client("billing", machine.clone()).await;
    let api = app.register_client("api", machine.clone()).await;
    let own: Value = app
        .token_request(&billing, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    let own = own["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status(), StatusCode::OK);
    assert_eq!(app.introspect(&api, own).await["active"], true);

    for id in ["webapp", "billing"] {
        let out = crate::support::cli::keyward(&app, &["clients", "delete", id], "");
        assert!(
            out.status.success(),
            "{}",
            crate::support::cli::stderr(&out)
        );
    }
    // Seconds later, not minutes: the person's token, the family's and the client's own.
    assert_eq!(
        app.userinfo(access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.introspect(&api, own).await["active"], false);
    // Its refresh token is dead: invalid_grant while this instance still remembers the client
    // (until the next reload), invalid_client after.
    let refresh_token = crate::support::endpoints::rt(&tokens);
    let refresh: Value = app
        .refresh(&web, &refresh_token, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        ["invalid_grant", "invalid_client"].contains(&refresh["error"].as_str().unwrap()),
        "{refresh}"
    );
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let recorded: i64 = revoked_access_tokens::table
        .filter(revoked_access_tokens::reason.eq("client deleted"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        recorded, 1,
        "the family's access token is on the revoked list"
    );

    // Registering the id again (later) does not revive the old client's tokens.
    app.clock().advance(time::Duration::minutes(2));
    app.register_client("billing", machine).await;
    assert_eq!(app.introspect(&api, own).await["active"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_family_s_access_token_ends_inside_the_leeway_too() {
    let (app, client, tokens) = crate::support::endpoints::refreshing_alice(&[]).await;
    let access = tokens["access_token"].as_str().unwrap();
    // Past `exp`, inside the leeway Keyward's endpoints allow for skewed clocks: still accepted.
    let ttl = app.state.config.tokens.access_ttl;
    app.clock().advance(ttl + time::Duration::seconds(5));
    assert_eq!(app.userinfo(access).await.status(), StatusCode::OK);
    // A relying party's logout revokes the refresh token (RFC 7009): the family ends, and every
    // access token Keyward would still accept with it.
    let resp = app
        .revoke(&client, &crate::support::endpoints::rt(&tokens))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        app.userinfo(access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.introspect(&client, access).await["active"], false);
}
