//! Keyward's pages in Debian's Chromium driven by Playwright. The example SPA (`examples/spa`) and
//! notes-api against a real Keyward (`tests/e2e/spa.mjs`): sign-up, code + PKCE, one refresh for
//! many 401s and for two tabs, sign-out, and axe-core on every page; this test owns the clock:
//! the script asks it to move time, and notes-api and the browser read the same time. And a
//! sign-in past the per-address limit through the page's proof of work (`tests/e2e/crowd.mjs`).
//! And a person confirming their address and resetting a forgotten password with codes from a
//! real SMTP server (`tests/e2e/accounts.mjs`). And the SPA asking for a second factor (step-up),
//! an authenticator app set up and then asked for at each sign-in (`tests/e2e/second_factor.mjs`,
//! codes from npm `otpauth` at the test clock). And passkeys with Chromium's virtual
//! authenticator (`tests/e2e/passkeys.mjs`). And an Express app on `passport-openidconnect`,
//! which sends no PKCE (`tests/e2e/passport.mjs`). And the React app with its Express
//! backend-for-frontend (`examples/react-bff`, `tests/e2e/react-bff.mjs`): tokens kept on the
//! server, one refresh for concurrent calls, CSRF, and sign-out ending all three sessions.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::oauth::ClientSpec;
use crate::support::smtp::SmtpSink;
use crate::support::{GOOD_PASSWORD, TestApp};

const AUDIENCE: &str = "https://notes.example";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Where screenshots go: `docs/screenshots` when refreshing the README's pictures
/// (`KEYWARD_SCREENSHOTS=docs/screenshots make test`), else `target/screenshots`.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var("KEYWARD_SCREENSHOTS").unwrap_or_else(|_| "target/screenshots".into());
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

/// The test clock as notes-api reads it (`tests/e2e/virtual-clock.mjs`): Unix milliseconds.
fn publish_time(app: &TestApp, file: &Path) -> i64 {
    let ms = i64::try_from(app.clock().now().unix_timestamp_nanos() / 1_000_000).unwrap();
    // Written whole, then renamed: a reader never sees half a number.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, ms.to_string()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
    ms
}

/// Example servers in one Node process on the test clock (`script` in tests/e2e, with `env`
/// besides Keyward's issuer, notes-api's audience and the clock file); the JSON line of
/// addresses it prints once they listen.
async fn serve_on_test_clock(
    app: &TestApp,
    script: &str,
    clock_file: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> (Child, Value) {
    let mut command = Command::new("node");
    command
        .arg("--import")
        .arg(e2e_dir().join("virtual-clock.mjs"))
        .arg(e2e_dir().join(script))
        .env("KEYWARD_ISSUER", &app.base)
        .env("NOTES_AUDIENCE", AUDIENCE)
        .env("E2E_CLOCK_FILE", clock_file);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (make test installs the examples' dependencies and builds them)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{script} prints its addresses"));
        if let Ok(addresses) = serde_json::from_str::<Value>(&line) {
            // Keep draining, or a full pipe would stall the servers' logging.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, addresses);
        }
    }
}

/// The SPA and notes-api in one Node process on the test clock; their addresses.
async fn start_examples(app: &TestApp, clock_file: &Path) -> (Child, String, String) {
    let (child, addresses) = serve_on_test_clock(app, "serve.mjs", clock_file, &[]).await;
    let spa = addresses["spa"].as_str().unwrap().to_owned();
    let api = addresses["api"].as_str().unwrap().to_owned();
    (child, spa, api)
}

/// What every script on the test clock may ask: move the clock (Keyward's, and the file the
/// Node servers read), count refresh tokens issued and families revoked. `None` for anything
/// else, which the test answers itself.
async fn clock_and_families(app: &TestApp, clock_file: &Path, ask: &Value) -> Option<Value> {
    match ask["op"].as_str()? {
        "advance" => {
            let seconds = ask["seconds"].as_i64().unwrap();
            app.clock().advance(time::Duration::seconds(seconds));
            Some(json!({ "now_ms": publish_time(app, clock_file) }))
        }
        "rotations" => Some(json!({ "count": app.family_rows().await.0 })),
        "families" => Some(json!({ "revoked": app.family_rows().await.1 })),
        _ => None,
    }
}

/// Runs a browser script that asks this test for things (one JSON line each way: `answer`
/// replies) until it says `done`; fails unless it ended well after that.
async fn drive(script: &mut Command, mut answer: impl AsyncFnMut(&Value) -> Value) {
    let mut child = script
        .current_dir(e2e_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the Playwright script");
    let mut answers = child.stdin.take().unwrap();
    let mut asks = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut finished = false;
    while let Some(line) = asks.next_line().await.unwrap() {
        let ask: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        let reply = if ask["op"] == "done" {
            finished = true;
            json!({})
        } else {
            answer(&ask).await
        };
        answers
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .unwrap();
    }
    let status = child.wait().await.unwrap();
    assert!(
        status.success() && finished,
        "the browser script failed (its output is above)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spa_signs_in_refreshes_once_across_tabs_and_signs_out_in_chromium() {
    // No grace window: a duplicate refresh would revoke the family rather than be forgiven, so
    // the one-refresh assertions hold only if the SPA makes one.
    let app = TestApp::spawn_with(&[
        ("KEYWARD_ACCESS_TOKEN_TTL", "1m"),
        ("KEYWARD_REFRESH_REUSE_GRACE", "0"),
    ])
    .await;
    let scratch = std::env::temp_dir().join(format!("keyward-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).unwrap();
    let clock_file = scratch.join("now");
    let start_ms = publish_time(&app, &clock_file);
    let (_examples, spa, _api) = start_examples(&app, &clock_file).await;
    let spec = ClientSpec {
        public: true,
        scopes: "openid profile offline_access notes:read notes:write",
        audiences: vec![AUDIENCE.to_owned()],
        redirect_uri: Some(format!("{spa}/callback")),
        post_logout: vec![format!("{spa}/")],
        grants: vec!["authorization_code", "refresh_token"],
        ..ClientSpec::default()
    };
    app.register_client("notes-spa", spec).await;

    // The same server on 127.0.0.1 is another origin, one no client registered.
    let unregistered = spa.replace("localhost", "127.0.0.1");
    let mut script = Command::new("node");
    script
        .arg(e2e_dir().join("spa.mjs"))
        .env("KEYWARD", &app.base)
        .env("SPA", &spa)
        .env("UNREGISTERED", &unregistered)
        .env("START_MS", start_ms.to_string())
        .env("SCREENSHOTS", screenshot_dir());
    drive(&mut script, async |ask| {
        let answer = clock_and_families(&app, &clock_file, ask).await;
        answer.unwrap_or_else(|| panic!("unknown request {ask}"))
    })
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_sign_in_limit_a_new_chromium_solves_the_proof_of_work_and_signs_in() {
    // The default limits: 20 failed sign-ins per address in 10 minutes.
    let app = TestApp::spawn().await;
    app.create_user("owner", GOOD_PASSWORD).await;
    for i in 0..20 {
        let resp = app
            .new_browser()
            .sign_in(&format!("user{i}"), "Summer2026!")
            .await;
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "guess {i}"
        );
    }
    let plain = app.new_browser().sign_in("owner", GOOD_PASSWORD).await;
    assert_eq!(plain.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);

    let output = Command::new("node")
        .arg(e2e_dir().join("crowd.mjs"))
        .current_dir(e2e_dir())
        .env("KEYWARD", &app.base)
        .env("USERNAME", "owner")
        .env("PASSWORD", GOOD_PASSWORD)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs the Playwright script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("the script's report");
    eprintln!("proof of work in Chromium: {report}");

    // The wrong password was judged and refused, the right one let in, from this address.
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let succeeded = keyward::audit::find_by_kind(&mut conn, "signin.succeeded", 10)
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    let failed = keyward::audit::find_by_kind(&mut conn, "signin.failed", 100)
        .await
        .unwrap();
    let judged_owner = failed
        .iter()
        .filter(|e| e.details["username"] == "owner" && e.details["reason"] == "wrong_credentials")
        .count();
    assert_eq!(
        judged_owner, 1,
        "the wrong password with its proof was judged"
    );
}

/// The newest mail to `to` whose subject ends with `subject`, once there are more than `seen`:
/// its code (the eight digits after "Your code: ") and its link.
async fn next_mail(sink: &SmtpSink, to: &str, subject: &str, seen: usize) -> Value {
    let mails = sink.wait_for_about(to, subject, seen + 1).await;
    let mail = &mails[seen];
    json!({ "code": mail.code(), "link": mail.link().unwrap_or_default() })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_confirms_the_address_resets_the_password_and_changes_the_address_in_chromium() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(&[
        ("KEYWARD_SMTP_URL", url.as_str()),
        ("KEYWARD_MAIL_FROM", "Keyward <no-reply@keyward.test>"),
        ("KEYWARD_EMAIL_VERIFICATION", "required"),
    ])
    .await;
    let mut script = Command::new("node");
    script
        .arg(e2e_dir().join("accounts.mjs"))
        .env("KEYWARD", &app.base);
    let mut seen = std::collections::HashMap::<String, usize>::new();
    drive(&mut script, async |ask| match ask["op"].as_str().unwrap() {
        "mail" => {
            let (to, subject) = (
                ask["to"].as_str().unwrap(),
                ask["subject"].as_str().unwrap(),
            );
            let count = seen.entry(format!("{to} {subject}")).or_default();
            let mail = next_mail(&sink, to, subject, *count).await;
            *count += 1;
            mail
        }
        other => panic!("unknown request {other}"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spa_asks_for_a_second_factor_and_every_sign_in_then_needs_the_app_in_chromium() {
    let app = TestApp::spawn().await;
    app.create_user("grace", GOOD_PASSWORD).await;
    let scratch = std::env::temp_dir().join(format!("keyward-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).unwrap();
    let clock_file = scratch.join("now");
    let start_ms = publish_time(&app, &clock_file);
    let (_examples, spa, _api) = start_examples(&app, &clock_file).await;
    let spec = ClientSpec {
        public: true,
        first_party: true,
        scopes: "openid profile offline_access notes:read notes:write",
        audiences: vec![AUDIENCE.to_owned()],
        redirect_uri: Some(format!("{spa}/callback")),
        post_logout: vec![format!("{spa}/")],
        grants: vec!["authorization_code", "refresh_token"],
        ..ClientSpec::default()
    };
    app.register_client("notes-spa", spec).await;
    let mut script = Command::new("node");
    script
        .arg(e2e_dir().join("second_factor.mjs"))
        .env("KEYWARD", &app.base)
        .env("SPA", &spa)
        .env("START_MS", start_ms.to_string());
    drive(&mut script, async |ask| {
        let answer = clock_and_families(&app, &clock_file, ask).await;
        answer.unwrap_or_else(|| panic!("unknown request {ask}"))
    })
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_is_registered_proven_after_the_password_and_signs_in_alone_in_chromium() {
    let app = TestApp::spawn_on_localhost(&[]).await;
    assert!(app.base.starts_with("http://localhost:"));
    app.create_user("grace", GOOD_PASSWORD).await;
    let output = Command::new("node")
        .arg(e2e_dir().join("passkeys.mjs"))
        .current_dir(e2e_dir())
        .env("KEYWARD", &app.base)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs the Playwright script");
    assert!(
        output.status.success() && output.stdout.starts_with(b"ok"),
        "the browser script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // What happened is in the audit trail: added, proven, signed in with, removed.
    let mut conn = app.conn().await;
    for kind in ["mfa.passkey_added", "mfa.verified", "mfa.passkey_removed"] {
        let events = keyward::audit::find_by_kind(&mut conn, kind, 10)
            .await
            .unwrap();
        assert!(!events.is_empty(), "{kind} recorded");
    }
    let signed_in = keyward::audit::find_by_kind(&mut conn, "signin.succeeded", 20)
        .await
        .unwrap();
    assert!(
        signed_in.iter().any(|e| e.details["method"] == "passkey"),
        "a sign-in with the passkey alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_express_app_on_passport_openidconnect_signs_in_with_pkce_optional_in_chromium() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice", GOOD_PASSWORD).await;
    let mut script = Command::new("node");
    script
        .arg(e2e_dir().join("passport.mjs"))
        .env("KEYWARD", &app.base)
        .env("ALICE_SUB", alice.id.to_string());
    drive(&mut script, async |ask| match ask["op"].as_str().unwrap() {
        "register" => {
            let pkce = ask["pkce"].as_str().unwrap();
            let spec = ClientSpec {
                first_party: true,
                redirect_uri: Some(ask["redirect_uri"].as_str().unwrap().to_owned()),
                pkce_optional: pkce == "optional",
                ..ClientSpec::default()
            };
            let client = app.register_client(&format!("passport-{pkce}"), spec).await;
            json!({ "client_id": client.id, "client_secret": client.secret })
        }
        other => panic!("unknown request {other}"),
    })
    .await;
}

/// notes-api and the React example's BFF (listening on `bff_port`) in one Node process on the
/// test clock, as the confidential client `notes-bff`; the BFF's address. `scratch` holds the clock
/// file (`now`) and the refresh gate (`gate`, see `tests/e2e/serve-bff.mjs`).
async fn start_bff(app: &TestApp, scratch: &Path, bff_port: u16, secret: &str) -> (Child, String) {
    let port = bff_port.to_string();
    let gate = scratch.join("gate");
    let env: [(&str, &std::ffi::OsStr); 4] = [
        ("E2E_GATE_FILE", gate.as_os_str()),
        ("BFF_PORT", port.as_ref()),
        ("BFF_CLIENT_ID", "notes-bff".as_ref()),
        ("BFF_CLIENT_SECRET", secret.as_ref()),
    ];
    let (child, addresses) =
        serve_on_test_clock(app, "serve-bff.mjs", &scratch.join("now"), &env).await;
    (child, addresses["bff"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_react_app_and_its_bff_keep_tokens_on_the_server_and_sign_out_all_three_in_chromium() {
    // No grace window: a second refresh with the same token revokes the family, so only the
    // BFF's single flight keeps five concurrent calls signed in.
    let app = TestApp::spawn_with(&[
        ("KEYWARD_ACCESS_TOKEN_TTL", "1m"),
        ("KEYWARD_REFRESH_REUSE_GRACE", "0"),
    ])
    .await;
    app.create_user("grace", GOOD_PASSWORD).await;
    let scratch = std::env::temp_dir().join(format!("keyward-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).unwrap();
    let clock_file = scratch.join("now");
    let start_ms = publish_time(&app, &clock_file);
    // The redirect URI names the port, so the client is registered before the BFF starts.
    let port = crate::support::free_port();
    let origin = format!("http://localhost:{port}");
    let spec = ClientSpec {
        scopes: "openid profile offline_access notes:read notes:write",
        audiences: vec![AUDIENCE.to_owned()],
        redirect_uri: Some(format!("{origin}/bff/callback")),
        post_logout: vec![format!("{origin}/")],
        grants: vec!["authorization_code", "refresh_token"],
        ..ClientSpec::default()
    };
    let client = app.register_client("notes-bff", spec).await;
    let secret = client.secret.expect("a confidential client");
    let (_servers, bff) = start_bff(&app, &scratch, port, &secret).await;
    assert_eq!(bff, origin);

    let mut script = Command::new("node");
    script
        .arg(e2e_dir().join("react-bff.mjs"))
        .env("KEYWARD", &app.base)
        .env("BFF", &bff)
        .env("START_MS", start_ms.to_string());
    drive(&mut script, async |ask| {
        if let Some(answer) = clock_and_families(&app, &clock_file, ask).await {
            return answer;
        }
        react_bff_answer(&app, &scratch, ask).await
    })
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The React BFF script's own requests: arm the refresh gate, sign a person out everywhere.
async fn react_bff_answer(app: &TestApp, scratch: &Path, ask: &Value) -> Value {
    match ask["op"].as_str().unwrap() {
        "gate" => {
            std::fs::write(scratch.join("gate"), ask["calls"].to_string()).unwrap();
            json!({})
        }
        "sign_out_everywhere" => {
            let user = app
                .user_named(ask["username"].as_str().unwrap())
                .await
                .unwrap();
            let mut conn = app.conn().await;
            let by = keyward::audit::Actor::cli();
            let now = app.clock().now();
            let families = keyward::users::sign_out_everywhere(&mut conn, user.id, &by, now)
                .await
                .unwrap();
            json!({ "families": families.len() })
        }
        other => panic!("unknown request {other}"),
    }
}
