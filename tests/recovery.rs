//! Forgotten passwords through a real SMTP server: the mailed code resets the password and ends
//! everything issued before; known and unknown accounts get the same answer and the same work;
//! codes are single use, short-lived and tried a few times; requests are limited.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::endpoints::{refreshing, rt};
use crate::support::smtp::{Mail, SmtpSink};
use crate::support::{Browser, GOOD_PASSWORD, TestApp, assert_see_other, location};

const NEW_PASSWORD: &str = "a brand new battery staple";

/// The code of a reset mail and its link.
fn code_and_link(mail: &Mail) -> (String, String) {
    (mail.code(), mail.link().expect("the link"))
}

async fn ask_for_reset(browser: &Browser, identifier: &str) -> reqwest::Response {
    let csrf = browser.csrf("/forgot-password").await;
    browser
        .post_form(
            "/forgot-password",
            &[("csrf", &csrf), ("identifier", identifier)],
        )
        .await
}

async fn reset(
    browser: &Browser,
    identifier: &str,
    code: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = browser.csrf("/reset-password").await;
    browser
        .post_form(
            "/reset-password",
            &[
                ("csrf", &csrf),
                ("identifier", identifier),
                ("code", code),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await
}

/// Mails to `to` so far whose subject ends with `subject_end`.
fn mails_to(sink: &SmtpSink, to: &str, subject_end: &str) -> Vec<Mail> {
    sink.mails()
        .into_iter()
        .filter(|m| m.is(to, subject_end))
        .collect()
}

async fn wait_for(sink: &SmtpSink, to: &str, subject_end: &str, count: usize) -> Vec<Mail> {
    sink.wait_for_about(to, subject_end, count).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailed_code_sets_a_new_password_and_ends_everything_issued_before() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    let signed_up = app
        .browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    assert_see_other(&signed_up, "/account");
    // Alice uses an app: a refresh family and an access token; her browser stays signed in.
    let client = app.register_client("web", refreshing()).await;
    let tokens: Value = app.tokens_for(&client, "openid email offline_access").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // Someone (alice, on another browser) forgot the password. A forged Host changes nothing.
    let elsewhere = app.new_browser();
    let csrf = elsewhere.csrf("/forgot-password").await;
    let asked = elsewhere
        .client
        .post(format!("{}/forgot-password", app.base))
        .header("host", "evil.example")
        .form(&[("csrf", csrf.as_str()), ("identifier", "alice")])
        .send()
        .await
        .unwrap();
    assert_see_other(&asked, "/reset-password?user=alice");
    let mail = wait_for(&sink, "alice@example.com", "your password reset code", 1).await;
    let (code, link) = code_and_link(&mail[0]);
    assert_eq!(
        link,
        format!("{}/reset-password?user=alice&code={code}", app.base)
    );

    // The link fills the form in and spends nothing; a wrong code and a weak password fail.
    let path = link.strip_prefix(&app.base).unwrap();
    let page = elsewhere.get(path).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(&format!("value=\"{code}\""))
    );
    let wrong = reset(&elsewhere, "alice", "00000000", NEW_PASSWORD).await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().await.unwrap().contains("not right"));
    let weak = reset(&elsewhere, "alice", &code, "password").await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Still nothing changed: the old password and the old tokens work.
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);

    let done = reset(&elsewhere, "alice", &code, NEW_PASSWORD).await;
    assert_see_other(&done, "/signin?reset=1");
    // Spent: the same code again does nothing.
    let again = reset(&elsewhere, "alice", &code, "another fine passphrase").await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The same cut-off as a password change: sessions, refresh families, access tokens.
    assert_see_other(&app.browser.get("/account").await, "/signin");
    assert_eq!(
        app.userinfo(&access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.introspect(&client, &access).await["active"], false);
    let refreshed = app.refresh(&client, &rt(&tokens), None).await;
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);
    // The person then signs in as usual, with the new password only.
    app.assert_signs_in_only_with("alice", NEW_PASSWORD, GOOD_PASSWORD)
        .await;
    // The code went to her address: it is proven now. And she is told.
    let alice = app.user_named("alice").await.unwrap();
    assert!(alice.email_verified());
    wait_for(&sink, "alice@example.com", "your password was changed", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn known_and_unknown_accounts_get_the_same_answer_and_the_same_statements() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    for (known, unknown) in [
        ("alice", "nobody"),
        ("alice@example.com", "nobody@example.com"),
    ] {
        let a = ask_for_reset(&app.new_browser(), known).await;
        let b = ask_for_reset(&app.new_browser(), unknown).await;
        assert_eq!(a.status(), b.status());
        let (la, lb) = (location(&a).to_owned(), location(&b).to_owned());
        assert_eq!(
            la.replace(&url_encoded(known), "X"),
            lb.replace(&url_encoded(unknown), "X")
        );
        assert_eq!(a.text().await.unwrap(), b.text().await.unwrap());
    }
    // The same statements, counted on an instance whose background work is not running (the
    // request only queues; resolving it happens elsewhere and later).
    let quiet = app.build_another(&[]).await.unwrap();
    let state = quiet.state();
    let counter = state.metrics.db_queries();
    let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let mut counts = Vec::new();
    for identifier in ["alice", "nobody", "alice@example.com", "nobody@example.com"] {
        let before = counter.get();
        keyward::oauth::recovery::request(
            &state.db,
            &state.limits,
            identifier,
            ip,
            app.clock().now(),
        )
        .await
        .unwrap();
        counts.push(counter.get() - before);
    }
    assert!(
        counts.iter().all(|c| *c == counts[0] && *c > 0),
        "{counts:?}"
    );

    // Only the known account got mail (the unknown ones: none, not even a notice).
    wait_for(&sink, "alice@example.com", "your password reset code", 1).await;
    let mut conn = app.state.conn().await.unwrap();
    loop {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        let left: i64 = keyward::db::schema::reset_requests::table
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let strangers = sink
        .mails()
        .into_iter()
        .filter(|m| m.envelope_to.iter().any(|t| t.starts_with("nobody")))
        .count();
    assert_eq!(strangers, 0);
}

fn url_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_codes_expire_wrong_tries_end_them_and_requests_are_limited() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[("KEYWARD_LIMIT_MAIL_PER_ACCOUNT", "3/1h")]).await;
    app.browser
        .sign_up("bob", "bob@example.com", GOOD_PASSWORD)
        .await;
    let b = app.new_browser();

    // Expired (the injected clock): 15 minutes.
    assert_see_other(&ask_for_reset(&b, "bob").await, "/reset-password?user=bob");
    let (first, _) = code_and_link(&wait_for(&sink, "bob@example.com", "reset code", 1).await[0]);
    app.clock().advance(time::Duration::minutes(16));
    let late = reset(&b, "bob", &first, NEW_PASSWORD).await;
    assert_eq!(late.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        late.text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );

    // Five wrong tries end a code.
    ask_for_reset(&b, "bob").await;
    let (second, _) = code_and_link(&wait_for(&sink, "bob@example.com", "reset code", 2).await[1]);
    for _ in 0..5 {
        let wrong = reset(&b, "bob", "99999999", NEW_PASSWORD).await;
        assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let ended = reset(&b, "bob", &second, NEW_PASSWORD).await;
    assert_eq!(ended.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // No mail bombing: three requests per hour for what was typed, then 429.
    ask_for_reset(&b, "bob").await;
    let refused = ask_for_reset(&b, "bob").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let (third, _) = code_and_link(&wait_for(&sink, "bob@example.com", "reset code", 3).await[2]);
    assert_see_other(
        &reset(&b, "bob", &third, NEW_PASSWORD).await,
        "/signin?reset=1",
    );
    assert_eq!(mails_to(&sink, "bob@example.com", "reset code").len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_create_vouched_addresses_and_send_resets_that_people_finish_on_the_page() {
    use crate::support::cli::{keyward, stderr, stdout};
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    let password = format!("{GOOD_PASSWORD}\n");
    let created = keyward(
        &app,
        &[
            "users",
            "create",
            "--username",
            "ops",
            "--email",
            "ops@example.com",
            "--email-verified",
            "--password-stdin",
        ],
        &password,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    // A vouched address is verified, so no other account may verify it.
    let twice = keyward(
        &app,
        &[
            "users",
            "create",
            "--username",
            "ops2",
            "--email",
            "OPS@example.com",
            "--email-verified",
            "--password-stdin",
        ],
        &password,
    );
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("already"), "{}", stderr(&twice));

    let sent = keyward(&app, &["users", "send-reset", "ops", "--json"], "");
    assert!(sent.status.success(), "{}", stderr(&sent));
    let report: Value = serde_json::from_str(&stdout(&sent)).unwrap();
    assert_eq!(report["queued_to"], "ops@example.com");
    // A running server delivers it; the person finishes on the page as after "forgot".
    let (code, link) =
        code_and_link(&wait_for(&sink, "ops@example.com", "your password reset code", 1).await[0]);
    assert!(link.starts_with(&format!("{}/reset-password?user=ops&code=", app.base)));
    let b = app.new_browser();
    assert_see_other(
        &reset(&b, "ops", &code, NEW_PASSWORD).await,
        "/signin?reset=1",
    );
    assert_see_other(&b.sign_in("ops", NEW_PASSWORD).await, "/account");
    let mut conn = app.state.conn().await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "user.reset_sent", 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "cli");

    // Without an address there is nothing to send.
    keyward(
        &app,
        &["users", "create", "--username", "quiet", "--password-stdin"],
        &password,
    );
    let none = keyward(&app, &["users", "send-reset", "quiet"], "");
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no email address"));
}
