//! The client cache: no database on the `client_credentials` path once a client is known, and a
//! change made through any instance (or the CLI) taking effect on every instance.

use reqwest::StatusCode;

use crate::support::oauth::{ClientSpec, TestClient};
use crate::support::{TestApp, wait_until};

fn machine() -> ClientSpec {
    ClientSpec {
        grants: vec!["client_credentials"],
        scopes: "api:read",
        ..ClientSpec::default()
    }
}

async fn client_credentials(app: &TestApp, client: &TestClient) -> StatusCode {
    app.token_request(client, &[("grant_type", "client_credentials")])
        .await
        .status()
}

/// The token endpoint's failure limit would answer 429 to the polling below; it is not what these
/// tests are about.
const LIMITS_OFF: [(&str, &str); 2] = [
    ("KEYWARD_LIMIT_TOKEN_PER_IP", "off"),
    ("KEYWARD_LIMIT_TOKEN_PER_CLIENT", "off"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_known_client_gets_tokens_without_the_database() {
    // Key and client checks every 5 minutes: none falls inside the loop below. Housekeeping's
    // first round at start-up may, with a handful of statements; a token that read the client
    // would send at least one each (two before the cache: the pool's check and the read).
    let app = TestApp::spawn_with(&[("KEYWARD_KEY_RELOAD", "5m")]).await;
    let client = app.register_client("billing", machine()).await;
    assert_eq!(client_credentials(&app, &client).await, StatusCode::OK);
    let statements = app.state.metrics.db_queries();
    let before = statements.get();
    let tokens = 100;
    for _ in 0..tokens {
        assert_eq!(client_credentials(&app, &client).await, StatusCode::OK);
    }
    let sent = statements.get() - before;
    assert!(
        sent < tokens / 2,
        "{sent} statements sent for {tokens} tokens"
    );
    // A wrong secret is still refused, and asks the database (the secret may have been rotated).
    let wrong = TestClient {
        secret: Some("kwcs_wrong".to_owned()),
        ..client.clone()
    };
    assert_eq!(
        client_credentials(&app, &wrong).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(statements.get() > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_and_a_deleted_client_take_effect_on_every_instance() {
    let first = TestApp::spawn_with(&LIMITS_OFF).await;
    let second = first.another_instance(&[]).await;
    let old = first.register_client("billing", machine()).await;
    for app in [&first, &second] {
        assert_eq!(client_credentials(app, &old).await, StatusCode::OK);
    }
    let rotated = crate::support::cli::stdout(&crate::support::cli::keyward(
        &first,
        &["clients", "rotate-secret", "billing"],
        "",
    ));
    let new = TestClient {
        secret: rotated
            .trim()
            .strip_prefix("client_secret\t")
            .map(str::to_owned),
        ..old.clone()
    };
    assert!(new.secret.is_some(), "{rotated}");
    // The new secret works at once: a refusal by the cache asks the database (and replaces
    // what this instance remembered).
    assert_eq!(client_credentials(&first, &new).await, StatusCode::OK);
    assert_eq!(
        client_credentials(&first, &old).await,
        StatusCode::UNAUTHORIZED
    );
    // The other instance, never shown the new secret, forgets the old one at its next check.
    wait_until("the old secret refused", || async {
        client_credentials(&second, &old).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(client_credentials(&second, &new).await, StatusCode::OK);
    let out = crate::support::cli::keyward(&first, &["clients", "delete", "billing"], "");
    assert!(out.status.success());
    for app in [&first, &second] {
        wait_until("the deleted client refused", || async {
            client_credentials(app, &new).await == StatusCode::UNAUTHORIZED
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_that_cannot_be_checked_is_not_trusted() {
    // A change made while this instance cannot read the version would go unseen: after three
    // missed checks the cache is set aside, and the database (down) answers.
    let (app, proxy) = TestApp::spawn_behind_proxy(&[]).await;
    let client = app.register_client("billing", machine()).await;
    assert_eq!(client_credentials(&app, &client).await, StatusCode::OK);
    proxy.go_down();
    wait_until("the cached client set aside", || async {
        client_credentials(&app, &client).await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    proxy.come_back();
    wait_until("the client served again", || async {
        client_credentials(&app, &client).await == StatusCode::OK
    })
    .await;
}
