//! Signing keys: the schedule over time, JWKS caching, revocation, KEKs, several instances,
//! and a verifier that refuses every forgery.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

use crate::support::cli::{keyward, stderr, stdout};
use crate::support::jwt::verify_with_jwks;
use crate::support::{Browser, TestApp, random_kek, wait_until};
use keyward::keys::keyring::VerifyError;
use keyward::keys::store;

async fn jwks(b: &Browser) -> Vec<Value> {
    let resp = b.get("/jwks.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    doc["keys"].as_array().unwrap().clone()
}

fn kids(keys: &[Value]) -> BTreeSet<String> {
    keys.iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn rows(app: &TestApp) -> Vec<store::SigningKeyRow> {
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    store::list(&mut conn).await.unwrap()
}

fn claims(app: &TestApp, lifetime: Duration) -> Value {
    let now = app.clock().now().unix_timestamp();
    json!({
        "iss": app.base,
        "sub": "someone",
        "iat": now,
        "exp": now + lifetime.whole_seconds(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_deployment_publishes_an_active_and_a_next_key() {
    let app = TestApp::spawn().await;
    let keys = jwks(&app.browser).await;
    assert_eq!(keys.len(), 2);
    for k in &keys {
        let members: BTreeSet<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            members,
            BTreeSet::from(["kty", "n", "e", "kid", "alg", "use"]),
            "{k}"
        );
        assert_eq!(k["kty"], "RSA");
        assert_eq!(k["alg"], "RS256");
        assert_eq!(k["use"], "sig");
        // The kid is the RFC 7638 thumbprint of the published key.
        let kid =
            keyward::keys::material::thumbprint(k["n"].as_str().unwrap(), k["e"].as_str().unwrap());
        assert_eq!(k["kid"], kid.as_str());
        // 2048-bit modulus.
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(k["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
    }
    let now = app.clock().now();
    let active = app.state.keys.ring.active_kid(now).unwrap();
    assert!(kids(&keys).contains(&active));

    let discovery: Value = app
        .browser
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], app.base.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{}/jwks.json", app.base));
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let oauth: Value = app
        .browser
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(oauth["issuer"], app.base.as_str());
    assert_eq!(oauth["jwks_uri"], discovery["jwks_uri"]);

    // Every creation is in the audit trail.
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    for kid in kids(&keys) {
        let events = keyward::audit::find_by_subject(&mut conn, &kid)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "key.created");
        assert_eq!(events[0].actor, "system");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_goes_from_next_to_active_to_retired_to_gone() {
    let app = TestApp::spawn().await;
    let start = rows(&app).await;
    let (first, second) = (start[0].kid.clone(), start[1].kid.clone());
    let rotation_at = start[1].activates_at;
    assert_eq!(rotation_at - app.clock().now(), Duration::days(30));

    // A token signed by the first key just before the rotation...
    app.clock()
        .advance(rotation_at - app.clock().now() - Duration::seconds(1));
    let token = app
        .state
        .keys
        .ring
        .sign(
            "at+jwt",
            &claims(&app, Duration::minutes(10)),
            app.clock().now(),
        )
        .unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some(first.as_str())
    );

    // ...at the rotation the second key signs and a third is published next.
    app.clock().advance(Duration::seconds(1));
    app.state.keys.maintain().await.unwrap();
    let now = app.clock().now();
    assert_eq!(
        app.state.keys.ring.active_kid(now).as_deref(),
        Some(second.as_str())
    );
    let published = kids(&jwks(&app.browser).await);
    assert_eq!(published.len(), 3);
    assert!(
        published.contains(&first),
        "retired key stays while its tokens live"
    );

    // The old token still verifies, with our verifier and with an independent one.
    assert!(
        app.state
            .keys
            .ring
            .verify::<Value>(&token, "at+jwt", &app.base, now)
            .is_ok()
    );
    verify_with_jwks(&app, &token, None).await.unwrap();

    // After the longest token lifetime (1h ID tokens) plus leeway, the retired key leaves.
    app.clock().advance(Duration::minutes(61));
    let published = kids(&jwks(&app.browser).await);
    assert_eq!(published.len(), 2);
    assert!(!published.contains(&first));
    assert!(published.contains(&second));
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_caching_headers_never_outlive_the_next_change() {
    let app = TestApp::spawn().await;
    let resp = app.browser.get("/jwks.json").await;
    assert_eq!(resp.headers()["cache-control"], "public, max-age=3600");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));

    let not_modified = app
        .browser
        .client
        .get(format!("{}/jwks.json", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"], etag.as_str());
    assert!(not_modified.bytes().await.unwrap().is_empty());
    let stale = app
        .browser
        .client
        .get(format!("{}/jwks.json", app.base))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);

    // Ten minutes before the rotation, a cache may hold the JWKS for ten minutes, no longer.
    let rotation_at = rows(&app).await[1].activates_at;
    app.clock()
        .advance(rotation_at - app.clock().now() - Duration::minutes(10));
    let resp = app.browser.get("/jwks.json").await;
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_active_key_removes_it_at_once_and_promotes_the_next() {
    let app = TestApp::spawn().await;
    let before = rows(&app).await;
    let (active, next) = (before[0].kid.clone(), before[1].kid.clone());
    let now = app.clock().now();
    let token = app
        .state
        .keys
        .ring
        .sign("at+jwt", &claims(&app, Duration::minutes(10)), now)
        .unwrap();

    let out = keyward(
        &app,
        &["keys", "revoke", &active, "--reason", "leaked in a log"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), next);

    app.state.keys.maintain().await.unwrap();
    let now = app.clock().now();
    let published = kids(&jwks(&app.browser).await);
    assert!(
        !published.contains(&active),
        "revoked key leaves the JWKS at once"
    );
    assert!(published.contains(&next));
    assert_eq!(published.len(), 2, "a new next key is published");
    assert_eq!(
        app.state.keys.ring.active_kid(now).as_deref(),
        Some(next.as_str())
    );
    // Tokens it signed no longer verify.
    assert_eq!(
        app.state
            .keys
            .ring
            .verify::<Value>(&token, "at+jwt", &app.base, now)
            .unwrap_err(),
        VerifyError::UnknownKey
    );

    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let events = keyward::audit::find_by_subject(&mut conn, &active)
        .await
        .unwrap();
    let revoked = events.iter().find(|e| e.kind == "key.revoked").unwrap();
    assert_eq!(revoked.details["reason"], "leaked in a log");
    assert_eq!(revoked.actor, "cli");

    // The audit trail cannot be rewritten.
    let tamper = diesel_async::RunQueryDsl::execute(
        diesel::sql_query("DELETE FROM audit_events"),
        &mut conn,
    )
    .await;
    assert!(tamper.is_err(), "audit_events is append-only");

    let again = keyward(&app, &["keys", "revoke", &active, "--reason", "twice"], "");
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already revoked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_waits_for_caches_unless_forced_and_running_servers_follow() {
    let app = TestApp::spawn().await;
    let before = rows(&app).await;
    let next = before[1].kid.clone();
    // Not at the very instant the active key activated: the two would tie.
    app.clock().advance(Duration::seconds(1));

    // The next key was published a moment ago: verifiers may not have it yet.
    let out = keyward(&app, &["keys", "rotate"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pass --force"), "{}", stderr(&out));

    let out = keyward(&app, &["keys", "rotate", "--force"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), next);

    // The running server notices within its reload interval (1s in tests) on its own.
    wait_until("the server picks up the rotation", || async {
        app.state.keys.ring.active_kid(app.clock().now()).as_deref() == Some(next.as_str())
    })
    .await;
    let listed = stdout(&keyward(&app, &["keys", "list"], ""));
    let states: Vec<(&str, &str)> = listed
        .lines()
        .skip(1) // the header row
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], f[1])
        })
        .collect();
    assert_eq!(states.len(), 3);
    assert!(states.contains(&(before[0].kid.as_str(), "retired")));
    assert!(states.contains(&(next.as_str(), "active")));
    assert_eq!(states.iter().filter(|(_, s)| *s == "next").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_kek_refuses_to_start_and_touches_nothing() {
    let app = TestApp::spawn().await;
    let before: Vec<(String, Vec<u8>, String)> = rows(&app)
        .await
        .into_iter()
        .map(|r| (r.kid, r.sealed_private_key, r.kek_id))
        .collect();

    let err = app
        .build_another(&[("KEYWARD_KEK", &random_kek())])
        .await
        .err()
        .expect("a wrong KEK must not start");
    assert!(err.to_string().starts_with("KEYWARD_KEK:"), "{err}");

    let after: Vec<(String, Vec<u8>, String)> = rows(&app)
        .await
        .into_iter()
        .map(|r| (r.kid, r.sealed_private_key, r.kek_id))
        .collect();
    assert_eq!(before, after);

    // The binary says so in one line and exits non-zero.
    app.clock().advance(Duration::seconds(1));
    let out = keyward(&app, &["keys", "rotate", "--force"], "");
    assert!(out.status.success(), "right KEK: {}", stderr(&out));
    let mut wrong = app.env.clone();
    wrong.insert("KEYWARD_KEK", random_kek());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["keys", "rotate", "--force"])
        .envs(wrong.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("KEYWARD_KEK: the configured key-encryption key")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrap_moves_every_key_to_a_new_kek() {
    let app = TestApp::spawn().await;
    // A refresh token issued under the old KEK, to present to the instance on the new one.
    let refresh_token = app
        .state
        .refresh
        .token_for(uuid::Uuid::new_v4(), 3)
        .expose()
        .to_owned();
    let dir = std::env::temp_dir().join(format!("kw-rewrap-{}", uuid::Uuid::new_v4()));
    let new_kek = dir.join("kek");
    let out = keyward(
        &app,
        &[
            "keys",
            "rewrap",
            "--new-kek-file",
            new_kek.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let new_id = stdout(&out).trim().to_owned();
    assert!(rows(&app).await.iter().all(|r| r.kek_id == new_id));

    // The old KEK no longer opens anything; the new one does.
    assert!(app.build_another(&[]).await.is_err());
    let file = new_kek.to_str().unwrap().to_owned();
    let mut env = app.env.clone();
    env.remove("KEYWARD_KEK");
    env.insert("KEYWARD_KEK_FILE", file);
    let config = keyward::config::Config::from_env(|n| env.get(n).cloned()).unwrap();
    let rebuilt = keyward::app::App::build(config, app.clock().clone())
        .await
        .unwrap();
    let now = app.clock().now();
    let token = rebuilt
        .state()
        .keys
        .ring
        .sign("at+jwt", &claims(&app, Duration::minutes(5)), now)
        .unwrap();
    assert!(
        app.state
            .keys
            .ring
            .verify::<Value>(&token, "at+jwt", &app.base, now)
            .is_ok()
    );
    // The refresh-token MAC key was re-sealed, not replaced: issued refresh tokens stay valid.
    let read = rebuilt
        .state()
        .refresh
        .read(&refresh_token)
        .expect("still ours");
    assert_eq!(read.generation, 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_key_is_published_before_it_signs() {
    let app = TestApp::spawn().await;
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pem = rsa.private_key_to_pem().unwrap(); // PKCS#1, as hand-rolled setups often have
    let path = std::env::temp_dir().join(format!("kw-import-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, pem).unwrap();

    let out = keyward(&app, &["keys", "import", path.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let kid = stdout(&out).trim().to_owned();
    app.state.keys.maintain().await.unwrap();
    let now = app.clock().now();
    assert!(kids(&jwks(&app.browser).await).contains(&kid));
    assert_ne!(
        app.state.keys.ring.active_kid(now).as_deref(),
        Some(kid.as_str())
    );
    let imported = rows(&app).await.into_iter().find(|r| r.kid == kid).unwrap();
    assert_eq!(imported.origin, "imported");
    assert!(imported.activates_at - imported.published_at >= Duration::hours(48));

    let again = keyward(&app, &["keys", "import", path.to_str().unwrap()], "");
    assert!(!again.status.success(), "the same key twice");
    let small = openssl::rsa::Rsa::generate(1024)
        .unwrap()
        .private_key_to_pem()
        .unwrap();
    std::fs::write(&path, small).unwrap();
    let weak = keyward(&app, &["keys", "import", path.to_str().unwrap()], "");
    assert!(
        stderr(&weak).contains("at least 2048 bits"),
        "{}",
        stderr(&weak)
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_starting_together_create_one_active_and_one_next_key() {
    let app = TestApp::spawn().await;
    // Empty the table so both instances start on a fresh database at the same moment.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
        diesel::sql_query("DELETE FROM signing_keys")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(app.another_instance(&[]), app.another_instance(&[]));
    let all = rows(&app).await;
    assert_eq!(all.len(), 2, "exactly two keys were created");
    let now = app.clock().now();
    assert_eq!(
        a.state.keys.ring.active_kid(now),
        b.state.keys.ring.active_kid(now)
    );

    // A rotation through one instance is seen by the other within the reload interval.
    let kek = keyward::keys::kek::Kek::from_bytes(&decode(&app.env["KEYWARD_KEK"]));
    let policy = a.state.keys.policy();
    let mut conn = keyward::db::connect(&a.state.db).await.unwrap();
    // Not at the very instant the active key activated: the two would tie.
    let tie = store::rotate(&mut conn, &kek, policy, now, true).await;
    assert!(
        matches!(tie, Err(store::KeyError::JustActivated)),
        "{tie:?}"
    );
    app.clock().advance(Duration::seconds(1));
    let now = app.clock().now();
    let promoted = store::rotate(&mut conn, &kek, policy, now, true)
        .await
        .unwrap();
    wait_until("instance b sees the rotation", || async {
        b.state.keys.ring.active_kid(app.clock().now()).as_deref() == Some(promoted.active.as_str())
    })
    .await;
}

fn decode(b64: &str) -> [u8; 32] {
    keyward::keys::kek::decode_kek(b64).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_server_on_an_empty_key_store_creates_a_kek_file() {
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(format!("keyward-kek-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // A command run from another directory, with the default relative path: refused in one
    // line naming where it looked, and nothing created there.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["keys", "rotate"])
        .current_dir(&dir)
        .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KEYWARD_KEK", "")
        .env("KEYWARD_KEK_FILE", "keys/kek")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let expected = dir.join("keys/kek");
    assert!(err.contains(expected.to_str().unwrap()), "{err}");
    assert!(
        !dir.join("keys").exists(),
        "no KEK file (nor its folder) was made"
    );

    // A server on a store that already has keys refuses a missing KEK file too.
    let missing = dir.join("elsewhere/kek");
    let refused = app
        .build_another(&[
            ("KEYWARD_KEK", ""),
            ("KEYWARD_KEK_FILE", missing.to_str().unwrap()),
        ])
        .await;
    assert!(refused.is_err_and(|e| e.to_string().contains("does not exist")));
    assert!(!missing.exists());

    // A server on an empty store makes one, readable by its owner only.
    let fresh = dir.join("fresh/kek");
    let first = TestApp::spawn_with(&[
        ("KEYWARD_KEK", ""),
        ("KEYWARD_KEK_FILE", fresh.to_str().unwrap()),
    ])
    .await;
    assert!(fresh.exists());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(first);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kid_starting_with_a_dash_is_a_kid_not_an_option() {
    // Thumbprints are base64url: one in 64 starts with '-'.
    let app = TestApp::spawn().await;
    let out = keyward(&app, &["keys", "revoke", "-Vq3x", "--reason", "test"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("unexpected argument"),
        "{}",
        stderr(&out)
    );
}
