//! Introspection (RFC 7662) and revocation (RFC 7009): what a client may learn about a token,
//! and ending its own tokens only.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::endpoints::{refreshing, refreshing_alice, rt};
use crate::support::oauth::{ClientSpec, TestClient};
use crate::support::{GOOD_PASSWORD, TestApp, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn introspection_describes_live_access_and_refresh_tokens_and_nothing_else() {
    let (app, client, first) = refreshing_alice(&[]).await;
    let at = first["access_token"].as_str().unwrap();
    let id_token = first["id_token"].as_str().unwrap();
    let info = app.introspect(&client, at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "webapp");
    assert_eq!(info["username"], "alice");
    assert_eq!(info["token_type"], "Bearer");
    assert_eq!(info["iss"], app.base.as_str());
    for k in ["scope", "sub", "exp", "iat", "aud", "jti"] {
        assert!(info.get(k).is_some(), "{k}");
    }
    let info = app.introspect(&client, &rt(&first)).await;
    assert_eq!(
        (info["active"].clone(), info["token_type"].clone()),
        (Value::Bool(true), "refresh_token".into())
    );
    for dead in [id_token, "garbage", "kwrt_unknown", ""] {
        assert_eq!(
            app.introspect(&client, dead).await,
            serde_json::json!({"active": false}),
            "{dead}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_ends_a_client_s_own_tokens_and_nobody_else_s() {
    let (app, client, first) = refreshing_alice(&[]).await;
    let at = first["access_token"].as_str().unwrap();
    // A client cannot revoke another client's tokens; unknown tokens are fine.
    let other = app.register_client("other", refreshing()).await;
    let revoke = |c: &TestClient, token: &str| {
        let req = app
            .browser
            .client
            .post(format!("{}/revoke", app.base))
            .basic_auth(&c.id, c.secret.clone())
            .form(&[("token", token), ("token_type_hint", "refresh_token")]);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(revoke(&other, at).await, StatusCode::OK);
    assert_eq!(
        app.introspect(&client, at).await["active"],
        true,
        "not other's to revoke"
    );
    assert_eq!(revoke(&client, "nonsense").await, StatusCode::OK);
    // The hint is only a hint: an access token named a refresh token is still found.
    assert_eq!(revoke(&client, at).await, StatusCode::OK);
    assert_eq!(app.introspect(&client, at).await["active"], false);
    assert_eq!(revoke(&client, &rt(&first)).await, StatusCode::OK);
    assert_eq!(app.introspect(&client, &rt(&first)).await["active"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_needs_a_confidential_client() {
    let (app, _, first) = refreshing_alice(&[]).await;
    let at = first["access_token"].as_str().unwrap();
    let spa = app
        .register_client(
            "spa",
            ClientSpec {
                public: true,
                ..refreshing()
            },
        )
        .await;
    let resp = app
        .browser
        .client
        .post(format!("{}/introspect", app.base))
        .form(&[("token", at), ("client_id", spa.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let anonymous = app
        .browser
        .client
        .post(format!("{}/introspect", app.base))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_fails_closed_when_the_database_is_down() {
    let (app, proxy) = TestApp::spawn_behind_proxy(&[]).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("webapp", refreshing()).await;
    let tokens = app.tokens_for(&client, "openid offline_access").await;
    proxy.go_down();
    let access = tokens["access_token"].as_str().unwrap();
    let resp = app.introspect_response(&client, access).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(resp.json::<Value>().await.unwrap()["active"], true);
    proxy.come_back();
    // The pool may hand out a connection broken by the outage once more: wait for an answer.
    wait_until("introspection answers again", || async {
        let resp = app.introspect_response(&client, access).await;
        resp.status() == StatusCode::OK
    })
    .await;
    assert_eq!(app.introspect(&client, access).await["active"], true);
}
