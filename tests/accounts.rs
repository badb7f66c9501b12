//! People proving their email address, through a real SMTP server: the mailed code and its
//! link, wrong, spent, expired and replaced codes, resending within limits, sign-in waiting for
//! verification when required, and sign-up that tells a stranger nothing about an address.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::oauth::{ClientSpec, claims_of};
use crate::support::smtp::{Mail, SmtpSink};
use crate::support::{Browser, GOOD_PASSWORD, TestApp, assert_see_other, location};

/// The eight digits of a verification mail, and its link.
fn code_and_link(mail: &Mail) -> (String, String) {
    (mail.code(), mail.link().expect("the link"))
}

/// Posts `code` on the verify page of `browser`.
async fn submit_code(browser: &Browser, code: &str) -> reqwest::Response {
    let csrf = browser.csrf("/verify-email").await;
    browser
        .post_form("/verify-email", &[("csrf", &csrf), ("code", code)])
        .await
}

async fn resend(browser: &Browser) -> reqwest::Response {
    let csrf = browser.csrf("/verify-email").await;
    browser
        .post_form("/verify-email/resend", &[("csrf", &csrf)])
        .await
}

async fn live_codes(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::account_codes;
    let mut conn = app.state.conn().await.unwrap();
    account_codes::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailed_code_proves_the_address_once_and_tokens_then_say_so() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    // A forged Host never reaches a mailed link: links are built from the issuer.
    let csrf = app.browser.csrf("/signup").await;
    let resp = app
        .browser
        .client
        .post(format!("{}/signup", app.base))
        .header("host", "evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "alice"),
            ("email", "Alice@Example.com"),
            ("password", GOOD_PASSWORD),
            ("password_confirm", GOOD_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    // Optional verification: signed in at once, with the address still to prove.
    assert_see_other(&resp, "/account");
    let mail = sink.wait_for_mail_to("Alice@Example.com").await;
    assert_eq!(mail.subject, "Keyward: confirm your email address");
    let (code, link) = code_and_link(&mail);
    assert_eq!(link, format!("{}/verify-email?code={code}", app.base));
    assert!(!mail.html.unwrap().contains("evil.example"));
    let account = app.browser.get("/account").await.text().await.unwrap();
    assert!(account.contains("(not confirmed)"), "{account}");

    // Opening the link (as a mail scanner would) only fills the form in.
    let path = link.strip_prefix(&app.base).unwrap();
    for _ in 0..3 {
        let page = app.browser.get(path).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.text()
                .await
                .unwrap()
                .contains(&format!("value=\"{code}\""))
        );
    }
    assert_eq!(live_codes(&app).await, 1, "a GET consumes nothing");
    assert!(
        app.user_named("alice")
            .await
            .unwrap()
            .email_verified_at
            .is_none()
    );

    // A wrong code is refused and counted; the right one proves the address.
    let wrong = submit_code(&app.browser, "00000000").await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().await.unwrap().contains("4 more tries"));
    let spaced = format!("{} {}", &code[..4], &code[4..]);
    assert_see_other(&submit_code(&app.browser, &spaced).await, "/account");
    let alice = app.user_named("alice").await.unwrap();
    assert!(alice.email_verified());
    assert_eq!(live_codes(&app).await, 0, "spent");
    let account = app.browser.get("/account").await.text().await.unwrap();
    assert!(!account.contains("(not confirmed)"));
    // Nothing left to verify: the page sends the person back to the account.
    assert_see_other(&app.browser.get(path).await, "/account");

    let mut conn = app.state.conn().await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "user.email_verified", 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    drop(conn);

    // ID tokens and userinfo now tell the truth.
    let client = app.register_client("web", ClientSpec::default()).await;
    let tokens: Value = app.tokens_for(&client, "openid email").await;
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "Alice@Example.com");
    assert_eq!(id["email_verified"], true);
    let info: Value = app
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["email_verified"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_expired_and_replaced_codes_fail_and_resending_is_limited() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[("KEYWARD_LIMIT_MAIL_PER_ACCOUNT", "3/1h")]).await;
    let resp = app
        .browser
        .sign_up("bob", "bob@example.com", GOOD_PASSWORD)
        .await;
    assert_see_other(&resp, "/account");
    let (first, _) = code_and_link(&sink.wait_for(1).await[0]);

    // Five wrong tries end the code: the right one no longer works.
    for left in [4, 3, 2, 1] {
        let resp = submit_code(&app.browser, "12345678").await;
        let body = resp.text().await.unwrap();
        assert!(body.contains(&format!("{left} more tries")), "{body}");
    }
    let last = submit_code(&app.browser, "12345678").await;
    assert!(
        last.text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );
    let resp = submit_code(&app.browser, &first).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A new code replaces the old one.
    let resp = resend(&app.browser).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("We sent a new code"));
    let (second, _) = code_and_link(&sink.wait_for(2).await[1]);
    let resp = resend(&app.browser).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (third, _) = code_and_link(&sink.wait_for(3).await[2]);
    if second != third {
        assert_eq!(
            submit_code(&app.browser, &second).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a replaced code is dead"
        );
    }
    // An expired one too (the injected clock, not the machine's).
    app.clock().advance(time::Duration::minutes(61));
    let resp = submit_code(&app.browser, &third).await;
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );

    // Mail bombing: three per account per hour (the hour above has passed), then 429, no mail.
    for _ in 0..3 {
        assert_eq!(resend(&app.browser).await.status(), StatusCode::OK);
    }
    let refused = resend(&app.browser).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let (sixth, _) = code_and_link(&sink.wait_for(6).await[5]);
    assert_see_other(&submit_code(&app.browser, &sixth).await, "/account");
    assert_eq!(sink.mails().len(), 6);
    assert!(app.user_named("bob").await.unwrap().email_verified());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_verification_required_a_sign_in_finishes_only_after_the_code() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[("KEYWARD_EMAIL_VERIFICATION", "required")]).await;
    // An address is needed to sign up at all.
    let none = app.new_browser().sign_up("nomail", "", GOOD_PASSWORD).await;
    assert_eq!(none.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let resp = app
        .browser
        .sign_up("carol", "carol@example.com", GOOD_PASSWORD)
        .await;
    assert_see_other(&resp, "/verify-email");
    // Not signed in yet: the account page sends the browser to sign in.
    assert_see_other(&app.browser.get("/account").await, "/signin");
    // Nor can an app sign her in without a browser.
    let spec = ClientSpec {
        grants: vec!["password"],
        scopes: "openid",
        ..ClientSpec::default()
    };
    let legacy = app.register_client("legacy", spec).await;
    let grant = app
        .token_request(
            &legacy,
            &[
                ("grant_type", "password"),
                ("username", "carol"),
                ("password", GOOD_PASSWORD),
                ("scope", "openid"),
            ],
        )
        .await;
    let body: Value = grant.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("not verified")
    );

    // Signing in again elsewhere waits too, and sends no second mail while the code lives.
    let elsewhere = app.new_browser();
    assert_see_other(
        &elsewhere.sign_in("carol", GOOD_PASSWORD).await,
        "/verify-email",
    );
    let mails = sink.wait_for(1).await;
    let (code, _) = code_and_link(&mails[0]);
    assert_see_other(&submit_code(&elsewhere, &code).await, "/account");
    assert_eq!(elsewhere.get("/account").await.status(), StatusCode::OK);
    // The first browser's pending sign-in was for the same person; it may finish by signing in.
    assert_see_other(
        &app.browser.sign_in("carol", GOOD_PASSWORD).await,
        "/account",
    );
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_up_with_a_verified_address_answers_as_for_a_new_one_and_tells_only_its_owner() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("owner", "owner@example.com", GOOD_PASSWORD)
        .await;
    let (code, _) = code_and_link(&sink.wait_for_mail_to("owner@example.com").await);
    assert_see_other(&submit_code(&app.browser, &code).await, "/account");

    // A stranger with the owner's address and someone with a new one: the same answer.
    let stranger = app
        .new_browser()
        .sign_up("stranger", "OWNER@example.com", GOOD_PASSWORD)
        .await;
    let newcomer = app
        .new_browser()
        .sign_up("newcomer", "new@example.com", GOOD_PASSWORD)
        .await;
    assert_eq!(stranger.status(), newcomer.status());
    assert_eq!(location(&stranger), location(&newcomer));

    // The owner learns of it; the stranger gets no code for the address.
    let notice = sink.wait_for_mail_to("OWNER@example.com").await;
    assert_eq!(
        notice.subject,
        "Keyward: someone tried to sign up with your address"
    );
    assert!(!notice.text.unwrap().contains("Your code"));
    sink.wait_for_mail_to("new@example.com").await;
    assert_eq!(sink.mails().len(), 3);
    // The owner keeps the address.
    assert!(app.user_named("owner").await.unwrap().email_verified());
    assert!(!app.user_named("stranger").await.unwrap().email_verified());
}

#[tokio::test(flavor = "multi_thread")]
async fn people_sign_in_with_the_names_the_setting_accepts_and_lockouts_count_what_was_typed() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[("KEYWARD_SIGN_IN_IDENTIFIER", "either")]).await;
    let page = app.new_browser().get("/signin").await.text().await.unwrap();
    assert!(page.contains(">Username or email</label>"), "{page}");
    app.browser
        .sign_up("dana", "Dana@Example.com", GOOD_PASSWORD)
        .await;
    // Not verified yet, but the only account with that address: it names her, in any case.
    let by_email = app.new_browser();
    assert_see_other(
        &by_email.sign_in("dana@EXAMPLE.com", GOOD_PASSWORD).await,
        "/account",
    );
    // A second account claims the same address unverified: it names neither any more...
    app.new_browser()
        .sign_up("mallory", "dana@example.com", GOOD_PASSWORD)
        .await;
    let ambiguous = app
        .new_browser()
        .sign_in("dana@example.com", GOOD_PASSWORD)
        .await;
    assert_eq!(ambiguous.status(), StatusCode::UNAUTHORIZED);
    // ...until its owner proves it: a verified address names exactly its owner.
    let (code, _) = code_and_link(&sink.wait_for_mail_to("Dana@Example.com").await);
    assert_see_other(&submit_code(&app.browser, &code).await, "/account");
    assert_see_other(
        &app.new_browser()
            .sign_in("dana@example.com", GOOD_PASSWORD)
            .await,
        "/account",
    );

    // Lockouts count what was typed: five wrong passwords by address lock the address...
    for _ in 0..5 {
        let wrong = app
            .new_browser()
            .sign_in("dana@example.com", "Summer2026!")
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = app
        .new_browser()
        .sign_in("dana@example.com", GOOD_PASSWORD)
        .await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...as they always counted the username typed.
    assert_see_other(
        &app.new_browser().sign_in("dana", GOOD_PASSWORD).await,
        "/account",
    );

    // With usernames only (the default), an address names nobody; with addresses only, a
    // username names nobody.
    for (setting, refused, accepted) in [
        ("username", "erin@example.com", "erin"),
        ("email", "erin", "erin@example.com"),
    ] {
        let other = TestApp::with_mail(&sink, &[("KEYWARD_SIGN_IN_IDENTIFIER", setting)]).await;
        other
            .browser
            .sign_up("erin", "erin@example.com", GOOD_PASSWORD)
            .await;
        let no = other.new_browser().sign_in(refused, GOOD_PASSWORD).await;
        assert_eq!(no.status(), StatusCode::UNAUTHORIZED, "{setting}");
        let yes = other.new_browser().sign_in(accepted, GOOD_PASSWORD).await;
        assert_see_other(&yes, "/account");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_smtp_server_down_sign_up_succeeds_and_the_code_arrives_when_it_is_back() {
    let mut sink = SmtpSink::start().await;
    sink.stop().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    let resp = app
        .browser
        .sign_up("frank", "frank@example.com", GOOD_PASSWORD)
        .await;
    assert_see_other(&resp, "/account");
    sink.restart().await;
    // Each retry is due on the injected clock; move it on until the mail lands.
    let mut rounds = 0;
    let mail = loop {
        rounds += 1;
        assert!(rounds < 3000, "the code never arrived");
        app.clock().advance(time::Duration::seconds(31));
        let got = sink
            .mails()
            .into_iter()
            .find(|m| m.envelope_to.iter().any(|t| t == "frank@example.com"));
        if let Some(mail) = got {
            break mail;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let (code, _) = code_and_link(&mail);
    assert_see_other(&submit_code(&app.browser, &code).await, "/account");
}
