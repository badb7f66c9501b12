//! The management API as a service's backend calls it: its own client, a `client_credentials`
//! token, JSON requests.

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::TestApp;
use super::oauth::{ClientSpec, TestClient};

/// Every management scope.
pub const ALL_USERS: &str = "admin:users.read admin:users.write";

/// A backend holding a management token.
pub struct Admin {
    /// Its registered client.
    pub client: TestClient,
    /// The bearer token it sends.
    pub token: String,
    base: String,
    http: Client,
}

impl TestApp {
    /// Registers `id` as a management client for `scopes` (a fixture) and fetches its token.
    pub async fn admin_client(&self, id: &str, scopes: &'static str) -> Admin {
        let spec = ClientSpec {
            scopes,
            grants: vec!["client_credentials"],
            ..ClientSpec::default()
        };
        let client = self.register_client(id, spec).await;
        let token = self.client_token(&client, None).await;
        self.admin_with(client, &token)
    }

    /// The backend of `client`, presenting `token`.
    pub fn admin_with(&self, client: TestClient, token: &str) -> Admin {
        Admin {
            client,
            token: token.to_owned(),
            base: self.base.clone(),
            http: Client::new(),
        }
    }

    /// A `client_credentials` access token of `client` (for `scope`, or all it may have).
    pub async fn client_token(&self, client: &TestClient, scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let resp = self.token_request(client, &form).await;
        assert_eq!(resp.status(), StatusCode::OK, "a client_credentials token");
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

impl Admin {
    /// The same backend presenting `token` instead.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            client: self.client.clone(),
            token: token.to_owned(),
            base: self.base.clone(),
            http: self.http.clone(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /admin/v1/users` with an `Idempotency-Key`.
    pub async fn create_once(&self, key: &str, body: &Value) -> Response {
        self.request(reqwest::Method::POST, "/admin/v1/users")
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `PATCH path` with a JSON body and, when given, `If-Match`.
    pub async fn patch(&self, path: &str, body: &Value, if_match: Option<&str>) -> Response {
        let mut req = self.request(reqwest::Method::PATCH, path).json(body);
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        req.send().await.unwrap()
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    /// Creates `username` with `password` and returns the created user.
    pub async fn create_user(&self, username: &str, password: &str) -> Value {
        let body = serde_json::json!({ "username": username, "password": password });
        let resp = self.post("/admin/v1/users", &body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "create {username}");
        resp.json().await.unwrap()
    }
}

/// Asserts an RFC 9457 problem with `status`, returning its body.
pub async fn assert_problem(resp: Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "RFC 9457 media type"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Who the trail says caused each event of `kind`, oldest first.
pub async fn events_of(app: &TestApp, kind: &str) -> Vec<String> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::audit_events;
    audit_events::table
        .filter(audit_events::kind.eq(kind))
        .order(audit_events::id.asc())
        .select(audit_events::actor)
        .load(&mut app.conn().await)
        .await
        .unwrap()
}
