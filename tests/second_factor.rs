//! Two-step sign-in: an authenticator app set up from the account page (codes computed by an
//! independent RFC 6238 implementation at the app's test clock), asked for at every sign-in and
//! never skipped, each code accepted once, recovery codes, step-up by `acr_values`, the
//! password grant refused, resets that keep the factor, and notices over a real SMTP server.

use reqwest::StatusCode;
use serde_json::Value;
use time::Duration;

use crate::support::cli::{keyward, stdout};
use crate::support::oauth::{
    ClientSpec, Pkce, TestClient, assert_oauth_error, callback_params, claims_of, param,
};
use crate::support::smtp::SmtpSink;
use crate::support::totp::code_at;
use crate::support::{
    Browser, GOOD_PASSWORD, TestApp, assert_see_other, csrf_of, join_all, location,
};

const MFA: &str = "urn:keyward:acr:mfa";

/// What setting up an app gave: its secret (base32) and the recovery codes shown once.
struct SetUp {
    secret: String,
    recovery: Vec<String>,
}

fn secret_of(html: &str) -> String {
    html.split("id=\"secret\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the page shows the secret")
        .to_owned()
}

fn recovery_codes_of(html: &str) -> Vec<String> {
    html.split("<li>")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .filter(|c| c.len() == 19 && c.matches('-').count() == 3)
        .map(str::to_owned)
        .collect()
}

impl TestApp {
    /// The code the person's app shows now, `steps` steps of 30 s away.
    fn code(&self, secret: &str, steps: i64) -> String {
        code_at(secret, self.clock().now().unix_timestamp() + steps * 30)
    }

    /// Sets up an authenticator app for whoever `browser` is signed in as.
    async fn set_up_app(&self, browser: &Browser) -> SetUp {
        let page = browser.get("/account/authenticator").await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("<svg role=\"img\""), "an inline QR code");
        let secret = secret_of(&html);
        let code = self.code(&secret, 0);
        let form = [("csrf", csrf_of(&html)), ("code", code)];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = browser.post_form("/account/authenticator", &form).await;
        assert_eq!(done.status(), StatusCode::OK, "the recovery codes page");
        assert_eq!(done.headers()["cache-control"], "no-store");
        let recovery = recovery_codes_of(&done.text().await.unwrap());
        assert_eq!(recovery.len(), 10);
        SetUp { secret, recovery }
    }

    /// Moves the clock to the next 30-second step, so the next code is a fresh one.
    fn next_step(&self) {
        self.clock().advance(Duration::seconds(30));
    }
}

/// Posts the second-step form with a code (or a recovery code).
async fn second_step(browser: &Browser, field: &str, value: &str) -> reqwest::Response {
    let page = browser.get("/signin/second-factor").await;
    assert_eq!(page.status(), StatusCode::OK, "the second-step page");
    let html = page.text().await.unwrap();
    browser
        .post_form(
            "/signin/second-factor",
            &[("csrf", &csrf_of(&html)), (field, value)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_app_set_up_every_sign_in_asks_for_its_code_and_nothing_skips_it() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    // A wrong first code does not turn it on.
    let page = app.browser.get("/account/authenticator").await;
    let html = page.text().await.unwrap();
    let wrong = app
        .browser
        .post_form(
            "/account/authenticator",
            &[("csrf", &csrf_of(&html)), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        secret_of(&wrong.text().await.unwrap()),
        secret_of(&html),
        "the same secret again"
    );
    let set_up = app.set_up_app(&app.browser).await;
    sink.wait_for_about("alice@example.com", "an authenticator app was added", 1)
        .await;
    let account = app.browser.get("/account").await.text().await.unwrap();
    assert!(account.contains("10 unused recovery codes"), "{account}");

    // A new browser with the right password is only part-way in.
    let other = app.new_browser();
    assert_see_other(
        &other.sign_in("alice", GOOD_PASSWORD).await,
        "/signin/second-factor",
    );
    assert_see_other(&other.get("/account").await, "/signin");
    let client = app.register_client("web", ClientSpec::default()).await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[]);
    assert_see_other(&other.get(&url).await, "/signin");
    assert_see_other(&other.get("/consent?request=x").await, "/signin");
    // Two steps off is refused, one step behind is accepted (a slow phone clock), once the
    // set-up code's step is past.
    app.next_step();
    app.next_step();
    let far = second_step(&other, "code", &app.code(&set_up.secret, 2)).await;
    assert_eq!(far.status(), StatusCode::UNAUTHORIZED);
    assert!(far.text().await.unwrap().contains("not right"));
    let behind = second_step(&other, "code", &app.code(&set_up.secret, -1)).await;
    // On to the request the browser started before the second step.
    let resume = location(&behind).to_owned();
    assert!(resume.starts_with("/authorize/resume"), "{resume}");

    // Tokens say how the person signed in (RFC 8176 amr, and our acr).
    let resp = other.authorize(&resume, "alice", GOOD_PASSWORD, true).await;
    let code = param(&callback_params(&resp), "code").unwrap().to_owned();
    let tokens: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], MFA);
    let access = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["acr"], MFA);
    assert_eq!(access["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_accepted_once_even_by_browsers_racing_with_it() {
    // Replays count as failures: a threshold above this test's own replays.
    let app = TestApp::spawn_with(&[("KEYWARD_LOCKOUT_THRESHOLD", "100")]).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    app.browser.sign_in("alice", GOOD_PASSWORD).await;
    let set_up = app.set_up_app(&app.browser).await;
    for round in 0..5 {
        app.next_step();
        let browsers: Vec<Browser> = (0..4).map(|_| app.new_browser()).collect();
        let mut ready = vec![];
        for b in &browsers {
            assert_see_other(
                &b.sign_in("alice", GOOD_PASSWORD).await,
                "/signin/second-factor",
            );
            let html = b.get("/signin/second-factor").await.text().await.unwrap();
            ready.push((b, csrf_of(&html)));
        }
        let code = app.code(&set_up.secret, 0);
        let code = code.as_str();
        let answers = join_all(ready.iter().map(|(b, csrf)| async move {
            b.post_form("/signin/second-factor", &[("csrf", csrf), ("code", code)])
                .await
        }))
        .await;
        let won = answers
            .iter()
            .filter(|r| r.status() == StatusCode::SEE_OTHER)
            .count();
        assert_eq!(won, 1, "round {round}: one code, one sign-in");
        let used = second_step(&app.new_browser_at_second_step().await, "code", code).await;
        assert_eq!(used.status(), StatusCode::UNAUTHORIZED);
        assert!(used.text().await.unwrap().contains("already used"));
    }
}

impl TestApp {
    /// A new browser that proved alice's password.
    async fn new_browser_at_second_step(&self) -> Browser {
        let b = self.new_browser();
        assert_see_other(
            &b.sign_in("alice", GOOD_PASSWORD).await,
            "/signin/second-factor",
        );
        b
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_code_signs_in_once_and_its_use_is_mailed() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    let set_up = app.set_up_app(&app.browser).await;
    let lost_phone = app.new_browser_at_second_step().await;
    // Typed as a person would: spaces for dashes, upper case.
    let typed = set_up.recovery[3].replace('-', " ").to_uppercase();
    assert_see_other(
        &second_step(&lost_phone, "recovery_code", &typed).await,
        "/account",
    );
    let notice = sink
        .wait_for_about("alice@example.com", "a recovery code was used", 1)
        .await
        .remove(0);
    let text = notice.text.unwrap_or_default();
    assert!(text.contains("9 recovery codes left"), "{text}");
    let again = app.new_browser_at_second_step().await;
    let reused = second_step(&again, "recovery_code", &set_up.recovery[3]).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    assert!(reused.text().await.unwrap().contains("already used"));
    // New codes replace the old set, after a fresh code from the app.
    app.next_step();
    let page = app.browser.get("/account/recovery-codes").await;
    let html = page.text().await.unwrap();
    let code = app.code(&set_up.secret, 0);
    let replaced = app
        .browser
        .post_form(
            "/account/recovery-codes",
            &[("csrf", &csrf_of(&html)), ("code", &code)],
        )
        .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let fresh = recovery_codes_of(&replaced.text().await.unwrap());
    assert_eq!(fresh.len(), 10);
    let old = second_step(&again, "recovery_code", &set_up.recovery[0]).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "the old set ended");
    assert_see_other(
        &second_step(&again, "recovery_code", &fresh[0]).await,
        "/account",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_count_into_the_lockout() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    app.browser.sign_in("alice", GOOD_PASSWORD).await;
    let set_up = app.set_up_app(&app.browser).await;
    app.next_step();
    let thief = app.new_browser_at_second_step().await;
    for guess in ["111111", "222222", "333333", "444444", "555555"] {
        let r = second_step(&thief, "code", guess).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = second_step(&thief, "code", &app.code(&set_up.secret, 0)).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_grant_is_refused_for_a_person_with_a_second_factor() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let legacy = app
        .register_client(
            "legacy",
            ClientSpec {
                grants: vec!["password"],
                ..ClientSpec::default()
            },
        )
        .await;
    let grant = || {
        app.token_request(
            &legacy,
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", GOOD_PASSWORD),
                ("scope", "openid"),
            ],
        )
    };
    assert_eq!(grant().await.status(), StatusCode::OK);
    app.browser.sign_in("alice", GOOD_PASSWORD).await;
    app.set_up_app(&app.browser).await;
    let body = assert_oauth_error(grant().await, "invalid_grant").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("second factor"),
        "{body}"
    );
}

/// An app, alice signed in to it with her password alone, and a first-party client "web" of
/// `spec`.
async fn alice_signed_in_for(spec: ClientSpec) -> (TestApp, TestClient) {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let spec = ClientSpec {
        first_party: true,
        ..spec
    };
    let client = app.register_client("web", spec).await;
    assert_see_other(
        &app.browser.sign_in("alice", GOOD_PASSWORD).await,
        "/account",
    );
    (app, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn acr_values_asking_for_a_second_factor_step_up_a_password_only_sign_in() {
    let (app, client) = alice_signed_in_for(ClientSpec::default()).await;
    let pkce = Pkce::new();
    // Without interaction it cannot be met.
    let silent = app.authorize_url(&client, &pkce, &[("acr_values", MFA), ("prompt", "none")]);
    let refused = app.browser.get(&silent).await;
    assert_eq!(
        param(&callback_params(&refused), "error"),
        Some("interaction_required")
    );
    // Alice has no app: she sets one up now, then the request goes on.
    let url = app.authorize_url(&client, &pkce, &[("acr_values", MFA)]);
    assert_see_other(&app.browser.get(&url).await, "/signin/second-factor");
    let html = app
        .browser
        .get("/signin/second-factor")
        .await
        .text()
        .await
        .unwrap();
    let secret = secret_of(&html);
    let done = app
        .browser
        .post_form(
            "/signin/second-factor/set-up",
            &[("csrf", &csrf_of(&html)), ("code", &app.code(&secret, 0))],
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let page = done.text().await.unwrap();
    assert_eq!(recovery_codes_of(&page).len(), 10);
    let next = page
        .split("id=\"continue\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(next.starts_with("/authorize/resume"), "{next}");
    let resp = app.browser.get(&next).await;
    let code = param(&callback_params(&resp), "code").unwrap().to_owned();
    let tokens: Value = app
        .exchange_code(&client, &code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(claims_of(tokens["id_token"].as_str().unwrap())["acr"], MFA);

    // A password-only sign-in of someone who has an app is asked for its code, not set-up.
    let other = app.new_browser();
    app.next_step();
    assert_see_other(
        &other.sign_in("alice", GOOD_PASSWORD).await,
        "/signin/second-factor",
    );
    assert_see_other(
        &second_step(&other, "code", &app.code(&secret, 0)).await,
        "/account",
    );
    let plain = app.authorize_url(&client, &Pkce::new(), &[]);
    let resp = other.get(&plain).await;
    assert!(param(&callback_params(&resp), "code").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_registered_to_require_it_steps_up_a_password_only_sign_in() {
    let spec = ClientSpec {
        require_mfa: true,
        ..ClientSpec::default()
    };
    let (app, strict) = alice_signed_in_for(spec).await;
    let url = app.authorize_url(&strict, &Pkce::new(), &[]);
    assert_see_other(&app.browser.get(&url).await, "/signin/second-factor");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_keeps_the_factor_and_only_an_operator_can_remove_them_all() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    let set_up = app.set_up_app(&app.browser).await;
    // Forgot the password: the reset mails a code, the new password works, the app stays.
    let b = app.new_browser();
    let csrf = b.csrf("/forgot-password").await;
    b.post_form(
        "/forgot-password",
        &[("csrf", &csrf), ("identifier", "alice")],
    )
    .await;
    let code = sink
        .wait_for_about("alice@example.com", "your password reset code", 1)
        .await
        .remove(0)
        .code();
    let csrf = b.csrf("/reset-password").await;
    let new_password = "a brand new battery staple";
    b.post_form(
        "/reset-password",
        &[
            ("csrf", &csrf),
            ("identifier", "alice"),
            ("code", &code),
            ("password", new_password),
            ("password_confirm", new_password),
        ],
    )
    .await;
    assert_see_other(
        &b.sign_in("alice", new_password).await,
        "/signin/second-factor",
    );

    // What the operator sees of it.
    let shown = keyward(&app, &["users", "show", "alice", "--json"], "");
    let shown: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown["two_step"]["authenticator_app"], true);
    assert_eq!(shown["two_step"]["recovery_codes_left"], 10);
    // Lost every factor: the operator turns two-step sign-in off, and she is told.
    let out = keyward(&app, &["users", "reset-mfa", "alice", "--json"], "");
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["removed"]["authenticator_app"], true);
    assert_eq!(report["removed"]["recovery_codes"], 10);
    sink.wait_for_about("alice@example.com", "two-step sign-in was turned off", 1)
        .await;
    let fresh = app.new_browser();
    assert_see_other(&fresh.sign_in("alice", new_password).await, "/account");
    let _ = set_up;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_app_needs_a_fresh_code_from_it_and_is_mailed() {
    let sink = SmtpSink::start().await;
    let app = TestApp::with_mail(&sink, &[]).await;
    app.browser
        .sign_up("alice", "alice@example.com", GOOD_PASSWORD)
        .await;
    let set_up = app.set_up_app(&app.browser).await;
    let html = app
        .browser
        .get("/account/authenticator/remove")
        .await
        .text()
        .await
        .unwrap();
    // The session alone (a stolen cookie) is not enough.
    let without = app
        .browser
        .post_form(
            "/account/authenticator/remove",
            &[("csrf", &csrf_of(&html)), ("code", "123456")],
        )
        .await;
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    app.next_step();
    let html = without.text().await.unwrap();
    let removed = app
        .browser
        .post_form(
            "/account/authenticator/remove",
            &[
                ("csrf", &csrf_of(&html)),
                ("code", &app.code(&set_up.secret, 0)),
            ],
        )
        .await;
    assert_see_other(&removed, "/account?changed=authenticator-removed");
    sink.wait_for_about("alice@example.com", "your authenticator app was removed", 1)
        .await;
    let b = app.new_browser();
    assert_see_other(&b.sign_in("alice", GOOD_PASSWORD).await, "/account");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_policy_required_a_person_without_a_factor_sets_one_up_at_sign_in() {
    let app = TestApp::spawn_with(&[("KEYWARD_MFA", "required")]).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    assert_see_other(
        &app.browser.sign_in("alice", GOOD_PASSWORD).await,
        "/signin/second-factor",
    );
    assert_see_other(&app.browser.get("/account").await, "/signin");
    let html = app
        .browser
        .get("/signin/second-factor")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Set up an authenticator app"));
    let secret = secret_of(&html);
    let done = app
        .browser
        .post_form(
            "/signin/second-factor/set-up",
            &[("csrf", &csrf_of(&html)), ("code", &app.code(&secret, 0))],
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("href=\"/account\""));
    assert_eq!(app.browser.get("/account").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn passkeys_need_a_domain_name_and_junk_answers_get_a_page_not_a_500() {
    // An address as the issuer: WebAuthn has no relying party for it, so no passkey anywhere.
    let by_address = TestApp::spawn().await;
    by_address.create_user("alice", GOOD_PASSWORD).await;
    let page = by_address
        .browser
        .get("/signin")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("passkeys.js"), "no passkey script");
    by_address.browser.sign_in("alice", GOOD_PASSWORD).await;
    let status = by_address.browser.get("/account/passkeys").await.status();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let app = TestApp::spawn_on_localhost(&[]).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let html = app.browser.get("/signin").await.text().await.unwrap();
    assert!(
        html.contains("data-options="),
        "the sign-in page offers a passkey"
    );
    let junk = [
        "",
        "not json",
        r#"{"id":"x","rawId":"eA","type":"public-key","response":{}}"#,
    ];
    for credential in junk {
        let resp = app
            .browser
            .post_form(
                "/signin/passkey",
                &[("csrf", &csrf_of(&html)), ("credential", credential)],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{credential:?}");
        let body = resp.text().await.unwrap();
        // Refused for what it is, not as "expired": each refusal's page brings a new challenge.
        assert!(body.contains("could not be checked"), "{body}");
        assert_see_other(&app.browser.get("/account").await, "/signin");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passkey_challenges_want_verified_discoverable_keys_and_work_once_for_5_minutes() {
    let app = TestApp::spawn_on_localhost(&[]).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    // Registering needs the form's CSRF token and a sign-in.
    let refused = app
        .browser
        .post_form("/account/passkeys/options", &[("csrf", "forged")])
        .await;
    assert_ne!(refused.status(), StatusCode::OK);
    app.browser.sign_in("alice", GOOD_PASSWORD).await;
    let page = app
        .browser
        .get("/account/passkeys")
        .await
        .text()
        .await
        .unwrap();
    let options = app
        .browser
        .post_form("/account/passkeys/options", &[("csrf", &csrf_of(&page))])
        .await;
    assert_eq!(options.status(), StatusCode::OK);
    let options: Value = options.json().await.unwrap();
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    // An answer that is not a passkey's, after real options: refused on the page, nothing stored.
    let added = app
        .browser
        .post_form(
            "/account/passkeys",
            &[
                ("csrf", &csrf_of(&page)),
                ("credential", "{}"),
                ("name", "x"),
            ],
        )
        .await;
    assert_eq!(added.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = added.text().await.unwrap();
    assert!(body.contains("could not be checked"), "{body}");
    assert!(body.contains("You have no passkey yet."));
    // A challenge lives five minutes, and is spent by its first answer.
    let again = app
        .browser
        .post_form(
            "/account/passkeys",
            &[
                ("csrf", &csrf_of(&body)),
                ("credential", "{}"),
                ("name", "x"),
            ],
        )
        .await;
    assert!(again.text().await.unwrap().contains("expired"), "spent");
    app.browser
        .post_form("/account/passkeys/options", &[("csrf", &csrf_of(&body))])
        .await;
    app.clock()
        .advance(Duration::minutes(5) + Duration::seconds(1));
    let late = app
        .browser
        .post_form(
            "/account/passkeys",
            &[
                ("csrf", &csrf_of(&body)),
                ("credential", "{}"),
                ("name", "x"),
            ],
        )
        .await;
    assert!(late.text().await.unwrap().contains("expired"), "too old");
    // Removing one wants a sign-in of the last ten minutes: an older one signs in again first.
    app.clock().advance(Duration::minutes(6));
    let stale = app
        .browser
        .post_form(
            "/account/passkeys/remove",
            &[
                ("csrf", &csrf_of(&body)),
                ("id", &uuid::Uuid::new_v4().to_string()),
            ],
        )
        .await;
    assert_see_other(&stale, "/signin");
    let form = app.browser.get("/signin").await;
    assert_eq!(
        form.status(),
        StatusCode::OK,
        "the form, although signed in"
    );
}
