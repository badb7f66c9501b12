//! The resource owner password grant (RFC 6749 §4.3), where a client is registered for it, with the
//! sign-in page's lockout.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::oauth::{ClientSpec, TestClient};
use crate::support::{GOOD_PASSWORD, TestApp};

async fn grant(app: &TestApp, client: &TestClient, password: &str) -> reqwest::Response {
    let form = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", password),
        ("scope", "openid offline_access"),
    ];
    app.token_request(client, &form).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_grant_works_only_where_enabled_with_the_same_lockout() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let legacy = app
        .register_client(
            "legacy",
            ClientSpec {
                grants: vec!["password", "refresh_token"],
                scopes: "openid offline_access",
                ..ClientSpec::default()
            },
        )
        .await;
    let ok: Value = grant(&app, &legacy, GOOD_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        ok["access_token"].is_string()
            && ok["id_token"].is_string()
            && ok["refresh_token"].is_string()
    );
    for _ in 0..5 {
        let resp = grant(&app, &legacy, "wrong password").await;
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error_description"],
            "wrong username or password"
        );
    }
    let locked = grant(&app, &legacy, GOOD_PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::BAD_REQUEST);
    assert!(
        locked.json::<Value>().await.unwrap()["error_description"]
            .as_str()
            .unwrap()
            .contains("too many")
    );
    // The same lock holds on the sign-in page.
    assert_eq!(
        app.browser.sign_in("alice", GOOD_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
