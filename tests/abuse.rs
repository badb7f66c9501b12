//! Attackers and overload: the lockout under concurrency, rate limits per address and client.

use serde_json::Value;

use crate::support::oauth::{ClientSpec, TestClient};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, join_all};

/// A client allowed the password grant (a legacy service signing its users in over the API).
async fn password_client(app: &TestApp) -> TestClient {
    let spec = ClientSpec {
        grants: vec!["password"],
        scopes: "openid",
        ..ClientSpec::default()
    };
    app.register_client("legacy", spec).await
}

async fn password_grant(app: &TestApp, client: &TestClient, user: &str, pw: &str) -> (u16, Value) {
    let resp = app
        .token_request(
            client,
            &[
                ("grant_type", "password"),
                ("username", user),
                ("password", pw),
                ("scope", "openid"),
            ],
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn count(answers: &[(u16, Value)], status: u16, description: &str) -> usize {
    answers
        .iter()
        .filter(|(s, b)| {
            *s == status && b["error_description"].as_str().unwrap_or("") == description
        })
        .count()
}

const WRONG: &str = "wrong username or password";
const LOCKED: &str = "too many failed attempts; try again later";

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_correct_sign_ins_at_once_lock_nothing() {
    // A generous request timeout: waiting attempts are answered within half of it.
    let app = TestApp::spawn_with(&[("KEYWARD_REQUEST_TIMEOUT", "120s")]).await;
    app.create_user("svc", GOOD_PASSWORD).await;
    let client = password_client(&app).await;
    let answers =
        join_all((0..32).map(|_| password_grant(&app, &client, "svc", GOOD_PASSWORD))).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 32, "{answers:?}");

    // Nothing is left counting against the user, and the page signs them in at once.
    assert_see_other(&app.browser.sign_in("svc", GOOD_PASSWORD).await, "/account");
    let browsers: Vec<_> = (0..12).map(|_| app.new_browser()).collect();
    let pages = join_all(browsers.iter().map(|b| b.sign_in("svc", GOOD_PASSWORD))).await;
    for page in &pages {
        assert_see_other(page, "/account");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_wrong_sign_ins_at_once_are_cut_off_at_the_threshold() {
    let app = TestApp::spawn_with(&[("KEYWARD_REQUEST_TIMEOUT", "120s")]).await;
    app.create_user("victim", GOOD_PASSWORD).await;
    let client = password_client(&app).await;
    let answers =
        join_all((0..32).map(|_| password_grant(&app, &client, "victim", "guess guess"))).await;
    // Exactly the threshold (5) were judged; everything else found the account locked.
    assert_eq!(count(&answers, 400, WRONG), 5, "{answers:?}");
    assert_eq!(count(&answers, 400, LOCKED), 27, "{answers:?}");
    // Locked for the owner too (no trusted device here), until the lock expires.
    let (_, body) = password_grant(&app, &client, "victim", GOOD_PASSWORD).await;
    assert_eq!(body["error_description"], LOCKED);
    app.clock().advance(time::Duration::seconds(31));
    let (status, _) = password_grant(&app, &client, "victim", GOOD_PASSWORD).await;
    assert_eq!(status, 200);
}
