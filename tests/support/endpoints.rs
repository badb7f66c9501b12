//! One helper per endpoint an app calls with a token, so a test reads as the behaviour it checks:
//! `app.refresh(..)`, `app.introspect(..)`, `app.revoke(..)`, `app.userinfo(..)`; and the
//! refreshing client and token-row counts several areas share.

use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::TestApp;
use super::oauth::{ClientSpec, TestClient};

/// A client allowed the code flow and refresh.
pub fn refreshing() -> ClientSpec {
    ClientSpec {
        scopes: "openid profile email offline_access invoices:read",
        grants: vec!["authorization_code", "refresh_token"],
        ..ClientSpec::default()
    }
}

/// The refresh token of a token response.
pub fn rt(v: &Value) -> String {
    v["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// An app with alice, the refreshing client `webapp`, and tokens (with a refresh token) for her.
pub async fn refreshing_alice(settings: &[(&'static str, &str)]) -> (TestApp, TestClient, Value) {
    let app = TestApp::spawn_with(settings).await;
    app.create_user("alice", super::GOOD_PASSWORD).await;
    let client = app.register_client("webapp", refreshing()).await;
    let tokens = app
        .tokens_for(&client, "openid offline_access invoices:read")
        .await;
    (app, client, tokens)
}

impl TestApp {
    /// `POST /token` with `grant_type=refresh_token`, and a narrower `scope` if given.
    pub async fn refresh(&self, client: &TestClient, token: &str, scope: Option<&str>) -> Response {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.token_request(client, &form).await
    }

    /// `POST /introspect` as `client` (HTTP Basic), as sent.
    pub async fn introspect_response(&self, client: &TestClient, token: &str) -> Response {
        self.browser
            .client
            .post(format!("{}/introspect", self.base))
            .basic_auth(&client.id, client.secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /introspect")
    }

    /// The introspection answer for `token`, asked as `client`: a 200, never stored.
    pub async fn introspect(&self, client: &TestClient, token: &str) -> Value {
        let resp = self.introspect_response(client, token).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        resp.json().await.expect("an introspection answer")
    }

    /// `POST /revoke` of `token` as `client`.
    pub async fn revoke(&self, client: &TestClient, token: &str) -> Response {
        self.browser
            .client
            .post(format!("{}/revoke", self.base))
            .basic_auth(&client.id, client.secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /revoke")
    }

    /// `GET /userinfo` with `token` as the Bearer credential.
    pub async fn userinfo(&self, token: &str) -> Response {
        self.browser
            .client
            .get(format!("{}/userinfo", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /userinfo")
    }

    /// Refresh tokens ever issued (one more per rotation: each family's generations), and
    /// revoked families.
    pub async fn family_rows(&self) -> (i64, i64) {
        use diesel::dsl::sum;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use keyward::db::schema::refresh_families;
        let mut conn = keyward::db::connect(&self.state.db).await.unwrap();
        let tokens: Option<i64> = refresh_families::table
            .select(sum(refresh_families::generation + 1))
            .get_result(&mut conn)
            .await
            .unwrap();
        let tokens = tokens.unwrap_or(0);
        let revoked: i64 = refresh_families::table
            .filter(refresh_families::revoked_at.is_not_null())
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        (tokens, revoked)
    }
}
