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
            Ending::SignOut => {
                b.post_form("/signout", &[("csrf", &csrf)]).await;
            }
            Ending::PasswordChange => {
                let hash = app
                    .state
                    .hasher
                    .hash("a brand new passphrase")
                    .await
                    .unwrap();
                let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
                let now = app.clock().now();
                keyward::users::update_password(&mut conn, user_id, &hash, now)
                    .await
                    .unwrap();
            }
            Ending::Disable => {
                let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
                let now = app.clock().now();
                keyward::users::update_disabled(&mut conn, user_id, now)
                    .await
                    .unwrap();
            }
        }
    }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
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
    app.browser
        .client
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
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
