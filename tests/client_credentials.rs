//! The client credentials grant (RFC 6749 §4.4): a confidential client's token about itself.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestApp;
use crate::support::oauth::{ClientSpec, TestClient, assert_oauth_error};

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_issue_a_token_about_the_client_itself() {
    let app = TestApp::spawn().await;
    let spec = ClientSpec {
        scopes: "invoices:read invoices:write",
        grants: vec!["client_credentials"],
        audiences: vec!["https://api.example.com".into()],
        ..ClientSpec::default()
    };
    let service = app.register_client("billing", spec.clone()).await;
    let ok = app
        .token_request(
            &service,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "invoices:read"),
            ],
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let claims = crate::support::oauth::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "billing");
    assert_eq!(claims["aud"], "https://api.example.com");
    assert_eq!(claims["scope"], "invoices:read");
    let all: Value = app
        .token_request(&service, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["scope"], "invoices:read invoices:write");

    for scope in ["admin", "openid"] {
        let resp = app
            .token_request(
                &service,
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
        assert_oauth_error(resp, "invalid_scope").await;
    }
    let wrong = TestClient {
        id: "billing".into(),
        secret: Some("kwcs_wrong".into()),
    };
    let resp = app
        .token_request(&wrong, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let public = app
        .register_client(
            "spa",
            ClientSpec {
                public: true,
                ..spec
            },
        )
        .await;
    let resp = app
        .token_request(&public, &[("grant_type", "client_credentials")])
        .await;
    assert_oauth_error(resp, "unauthorized_client").await;
}
