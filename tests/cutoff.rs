//! What is ended stays ended: sign-out, password changes and disabling hold against requests that
//! were already in flight with the same cookie, released together, over many rounds.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;

use crate::support::oauth::{ClientSpec, Pkce};
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
