//! `/metrics` on its own listener: a scripted flow moves each counter by exactly what it did.

use std::collections::HashMap;

use reqwest::StatusCode;

use crate::support::oauth::{ClientSpec, TestClient};
use crate::support::{GOOD_PASSWORD, TestApp};

/// The scrape as `series -> value` (`name{labels}` exactly as exposed), for whole-number series
/// (counters, gauges, bucket counts; not the histograms' sums).
pub async fn scrape(app: &TestApp) -> HashMap<String, i64> {
    let resp = reqwest::get(format!("{}/metrics", app.metrics_base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// How much `series` moved between two scrapes (absent counts as 0).
fn delta(before: &HashMap<String, i64>, after: &HashMap<String, i64>, series: &str) -> i64 {
    after.get(series).copied().unwrap_or(0) - before.get(series).copied().unwrap_or(0)
}

async fn post_token(app: &TestApp, client: &TestClient, form: &[(&str, &str)]) -> StatusCode {
    app.token_request(client, form).await.status()
}

/// The flow the counters must reflect; returns how many token requests the limit refused.
async fn run_flow(app: &TestApp, web: &TestClient, machine: &TestClient) -> i64 {
    // Sign-ins on the page: one wrong, then the code flow signs alice in.
    let b = &app.browser;
    assert_eq!(b.sign_in("alice", "wrong password").await.status(), 401);
    let tokens = app.tokens_for(web, "openid offline_access").await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    // Two client credentials grants, one rotation, one reuse (the family is revoked), one
    // unknown token.
    let cc = [("grant_type", "client_credentials")];
    assert_eq!(post_token(app, machine, &cc).await, 200);
    assert_eq!(post_token(app, machine, &cc).await, 200);
    let refresh = |t: &str| {
        [("grant_type", "refresh_token"), ("refresh_token", t)].map(|(k, v)| (k, v.to_owned()))
    };
    let r = refresh(&first);
    let pairs: Vec<(&str, &str)> = r.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_token(app, web, &pairs).await, 200);
    assert_eq!(post_token(app, web, &pairs).await, 400, "reuse");
    let r = refresh("kwrt_nope");
    let pairs: Vec<(&str, &str)> = r.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_token(app, web, &pairs).await, 400);
    // Guessing from one address until the limit refuses: every 429 is counted.
    let wrong = TestClient {
        id: "machine".into(),
        secret: Some("kwcs_wrong".into()),
    };
    let mut refused = 0_i64;
    for _ in 0..10 {
        if post_token(app, &wrong, &cc).await == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused > 0, "the limit refused some");
    // The JWKS, fresh and revalidated; a path nobody routes.
    let jwks = b.get("/jwks.json").await;
    let etag = jwks.headers()["etag"].to_str().unwrap().to_owned();
    let again = b
        .client
        .get(format!("{}/jwks.json", app.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(b.get("/no/such/path/x1").await.status(), 404);

    refused
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_exactly_what_a_flow_did() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_LIMIT_TOKEN_PER_IP", "6/1h"),
        // A replay below must count as reuse, not as a grace retry.
        ("KEYWARD_REFRESH_REUSE_GRACE", "0"),
    ])
    .await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let web = app
        .register_client("web", crate::support::endpoints::refreshing())
        .await;
    let machine = ClientSpec {
        scopes: "reports:read",
        grants: vec!["client_credentials"],
        ..ClientSpec::default()
    };
    let machine = app.register_client("machine", machine).await;
    let before = scrape(&app).await;

    let refused = run_flow(&app, &web, &machine).await;

    let after = scrape(&app).await;
    let d = |series: &str| delta(&before, &after, series);
    for (series, moved) in [
        (
            r#"keyward_tokens_issued_total{grant="authorization_code"}"#,
            1,
        ),
        (
            r#"keyward_tokens_issued_total{grant="client_credentials"}"#,
            2,
        ),
        (r#"keyward_tokens_issued_total{grant="refresh_token"}"#, 1),
        (r#"keyward_refresh_total{outcome="rotated"}"#, 1),
        (r#"keyward_refresh_total{outcome="reuse_revoked"}"#, 1),
        (r#"keyward_refresh_total{outcome="invalid"}"#, 1),
        (r#"keyward_refresh_total{outcome="grace"}"#, 0),
        (r#"keyward_sign_ins_total{outcome="ok"}"#, 1),
        (r#"keyward_sign_ins_total{outcome="bad_credentials"}"#, 1),
        (
            r#"keyward_rate_limited_total{limit="token_per_ip"}"#,
            refused,
        ),
        (r#"keyward_jwks_requests_total{result="200"}"#, 1),
        (r#"keyward_jwks_requests_total{result="304"}"#, 1),
        (
            r#"keyward_http_requests_total{route="/jwks.json",method="GET",status="304"}"#,
            1,
        ),
        (
            r#"keyward_http_requests_total{route="/token",method="POST",status="429"}"#,
            refused,
        ),
        (
            r#"keyward_http_requests_total{route="unmatched",method="GET",status="404"}"#,
            1,
        ),
    ] {
        assert_eq!(d(series), moved, "{series}");
    }
    // Raw paths never become labels; the gauges are read at scrape time.
    assert!(!after.keys().any(|k| k.contains("/no/such")), "{after:?}");
    assert_eq!(after[r#"keyward_signing_keys{state="active"}"#], 1);
    assert_eq!(after[r#"keyward_signing_keys{state="next"}"#], 1);
    assert_eq!(after["keyward_password_hash_in_flight"], 0);
    assert!(after.contains_key(r#"keyward_db_pool_connections{state="idle"}"#));
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("keyward_http_request_duration_seconds_bucket{"))
    );
    // Not on the public port.
    assert_eq!(app.browser.get("/metrics").await.status(), 404);
}
