//! The account page's own changes through a real SMTP server: the password (this browser stays,
//! every other sign-in ends), the email address (a code to the new one, a notice to the old one)
//! and deleting the account; each only with the current password.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::endpoints::{refreshing, rt};
use crate::support::smtp::{Mail, SmtpSink};
use crate::support::{Browser, GOOD_PASSWORD, TestApp, assert_see_other};

const NEW_PASSWORD: &str = "a brand new battery staple";

async fn post(browser: &Browser, page: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let csrf = browser.csrf(page).await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post_form(page, &form).await
}

fn code_of(mail: &Mail) -> String {
    mail.code()
}

async fn mail_about(sink: &SmtpSink, to: &str, subject_end: &str) -> Mail {
    sink.wait_for_about(to, subject_end, 1).await.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_password_keeps_this_browser_and_ends_every_other_sign_in() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    let client = app.register_client("web", refreshing()).await;
    let tokens: Value = app.tokens_for(&client, "openid offline_access").await;
    let other = app.new_browser();
    assert_see_other(&other.sign_in("alice", GOOD_PASSWORD).await, "/account");
    let cookie_before = app.browser.cookie("keyward_session").unwrap();

    let change = |current: &'static str, new: &'static str| {
        let b = &app.browser;
        async move {
            post(
                b,
                "/account/password",
                &[
                    ("current", current),
                    ("password", new),
                    ("password_confirm", new),
                ],
            )
            .await
        }
    };
    // The current password is needed, and the new one follows the sign-up rules.
    let wrong = change("not my password", NEW_PASSWORD).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("current password is not right")
    );
    let weak = change(GOOD_PASSWORD, "password").await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other.get("/account").await.status(),
        StatusCode::OK,
        "nothing changed yet"
    );

    assert_see_other(
        &change(GOOD_PASSWORD, NEW_PASSWORD).await,
        "/account?changed=password",
    );
    // This browser stays signed in, under a new session id; every other sign-in ended.
    let page = app.browser.get("/account?changed=password").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Your password was changed")
    );
    assert_ne!(
        app.browser.cookie("keyward_session").unwrap(),
        cookie_before
    );
    assert_see_other(&other.get("/account").await, "/signin");
    let refreshed = app.refresh(&client, &rt(&tokens), None).await;
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);
    app.assert_signs_in_only_with("alice", NEW_PASSWORD, GOOD_PASSWORD)
        .await;
    mail_about(&sink, "alice@example.com", "your password was changed").await;

    // Guessing the current password from a stolen session runs into the sign-in lockout.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(change("guess", "another long passphrase").await.status());
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_address_needs_the_password_and_its_code_and_the_old_one_is_told() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "old@example.com", GOOD_PASSWORD)
        .await;
    let wrong = post(
        &app.browser,
        "/account/email",
        &[("email", "new@example.com"), ("current", "nope")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let asked = post(
        &app.browser,
        "/account/email",
        &[("email", "new@example.com"), ("current", GOOD_PASSWORD)],
    )
    .await;
    assert_see_other(&asked, "/account/email/confirm");
    let code =
        code_of(&mail_about(&sink, "new@example.com", "confirm your new email address").await);
    let notice = mail_about(
        &sink,
        "old@example.com",
        "a new email address was asked for",
    )
    .await;
    assert!(notice.text.unwrap().contains("new@example.com"));
    // Until the code comes back the old address stays.
    assert_eq!(
        app.user_named("alice").await.unwrap().email.as_deref(),
        Some("old@example.com")
    );
    let bad = post(
        &app.browser,
        "/account/email/confirm",
        &[("code", "00000000")],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let done = post(&app.browser, "/account/email/confirm", &[("code", &code)]).await;
    assert_see_other(&done, "/account?changed=email");
    let alice = app.user_named("alice").await.unwrap();
    assert_eq!(alice.email.as_deref(), Some("new@example.com"));
    assert!(alice.email_verified(), "the code proved it");
    let again = post(&app.browser, "/account/email/confirm", &[("code", &code)]).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY, "spent");

    // An address another account verified cannot be taken.
    let bob = app.new_browser();
    bob.sign_up("bob", "bob@example.com", GOOD_PASSWORD).await;
    let bob_code =
        code_of(&mail_about(&sink, "bob@example.com", "confirm your email address").await);
    let csrf = bob.csrf("/verify-email").await;
    bob.post_form("/verify-email", &[("csrf", &csrf), ("code", &bob_code)])
        .await;
    post(
        &app.browser,
        "/account/email",
        &[("email", "BOB@example.com"), ("current", GOOD_PASSWORD)],
    )
    .await;
    let code =
        code_of(&mail_about(&sink, "BOB@example.com", "confirm your new email address").await);
    let taken = post(&app.browser, "/account/email/confirm", &[("code", &code)]).await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert_eq!(
        app.user_named("alice").await.unwrap().email.as_deref(),
        Some("new@example.com")
    );

    let mut conn = app.state.conn().await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "user.email_changed", 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_own_account_needs_the_password_and_is_an_operator_delete() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser.sign_up("alice", "", GOOD_PASSWORD).await;
    let client = app.register_client("web", refreshing()).await;
    let tokens: Value = app.tokens_for(&client, "openid offline_access").await;
    let wrong = post(&app.browser, "/account/delete", &[("current", "nope")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(app.user_named("alice").await.is_some());
    let gone = post(
        &app.browser,
        "/account/delete",
        &[("current", GOOD_PASSWORD)],
    )
    .await;
    assert_see_other(&gone, "/signin?deleted=1");
    assert!(app.user_named("alice").await.is_none());
    assert_see_other(&app.browser.get("/account").await, "/signin");
    let refreshed = app.refresh(&client, &rt(&tokens), None).await;
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        app.userinfo(access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let mut conn = app.state.conn().await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "user.deleted", 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let id = events[0].user_id.unwrap();
    assert_eq!(events[0].actor, format!("user:{id}"), "by the person");
}

/// The handles of the "sign out there" buttons on an account page.
fn handles_on(page: &str) -> Vec<String> {
    page.split("name=\"session\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_account_page_lists_where_one_is_signed_in_and_signs_other_browsers_out() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser.sign_up("alice", "", GOOD_PASSWORD).await;
    let (laptop, phone) = (app.new_browser(), app.new_browser());
    for b in [&laptop, &phone] {
        assert_see_other(&b.sign_in("alice", GOOD_PASSWORD).await, "/account");
    }
    let page = app.browser.get("/account").await.text().await.unwrap();
    assert_eq!(page.matches("(this browser)").count(), 1);
    assert!(
        page.contains("127.0.0.1"),
        "the address each signed in from"
    );
    let others = handles_on(&page);
    assert_eq!(others.len(), 2, "{page}");

    // One other browser, by its handle: exactly one of the two is signed out.
    let end = |fields: Vec<(&'static str, String)>| {
        let b = &app.browser;
        async move {
            let csrf = b.csrf("/account").await;
            let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
            form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
            b.post_form("/account/sessions/end", &form).await
        }
    };
    assert_see_other(
        &end(vec![("session", others[0].clone())]).await,
        "/account?changed=sessions",
    );
    let signed_in = |b: &Browser| {
        let b = b.clone();
        async move { b.get("/account").await.status() == StatusCode::OK }
    };
    let still = [signed_in(&laptop).await, signed_in(&phone).await];
    assert_eq!(still.iter().filter(|s| **s).count(), 1, "{still:?}");

    // Another person's session cannot be named: the handle is looked up among alice's only.
    let bob = app.new_browser();
    bob.sign_up("bob", "", GOOD_PASSWORD).await;
    let mut conn = app.state.conn().await.unwrap();
    let bob_id = app.user_named("bob").await.unwrap().id;
    let bobs = keyward::sessions::store::list_for_user(&mut conn, bob_id, app.clock().now())
        .await
        .unwrap();
    end(vec![("session", bobs[0].handle.clone())]).await;
    assert_eq!(bob.get("/account").await.status(), StatusCode::OK);

    // Every other browser: this one stays.
    end(vec![]).await;
    assert!(!signed_in(&laptop).await && !signed_in(&phone).await);
    assert!(signed_in(&app.browser).await);
    let events = keyward::audit::find_by_kind(&mut conn, "session.ended", 10)
        .await
        .unwrap();
    let ended: i64 = events
        .iter()
        .map(|e| e.details["sessions"].as_i64().unwrap())
        .sum();
    assert_eq!(ended, 2);
}
