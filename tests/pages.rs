//! The hosted pages as a person uses them: sign up, sign in, the account page, sign out.

use reqwest::StatusCode;

use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, csrf_of};

#[tokio::test(flavor = "multi_thread")]
async fn a_person_signs_up_sees_the_account_page_and_signs_out() {
    let app = TestApp::spawn().await;
    let b = &app.browser;

    let resp = b.sign_up("Alice", "alice@example.com", GOOD_PASSWORD).await;
    assert_see_other(&resp, "/account");

    let account = b.get("/account").await;
    assert_eq!(account.status(), StatusCode::OK);
    let html = account.text().await.unwrap();
    assert!(
        html.contains("You are signed in as <strong>Alice</strong>"),
        "{html}"
    );
    assert!(html.contains("alice@example.com"));

    let csrf = csrf_of(&html);
    let resp = b.post_form("/signout", &[("csrf", &csrf)]).await;
    assert_see_other(&resp, "/signin?signed_out=1");
    let page = b.get("/signin?signed_out=1").await.text().await.unwrap();
    assert!(page.contains("You have signed out."));

    // Signed out for real: the account page sends us to sign in again.
    assert_see_other(&b.get("/account").await, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_user_signs_in_with_any_case_of_their_username() {
    let app = TestApp::spawn().await;
    app.create_user("Bob", GOOD_PASSWORD).await;

    let resp = app.browser.sign_in("bOB", GOOD_PASSWORD).await;
    assert_see_other(&resp, "/account");
    let html = app.browser.get("/account").await.text().await.unwrap();
    assert!(html.contains("<strong>Bob</strong>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_account_page_asks_for_sign_in_and_comes_back_after_it() {
    let app = TestApp::spawn().await;
    app.create_user("carol", GOOD_PASSWORD).await;
    assert_see_other(&app.browser.get("/account").await, "/signin");
    let resp = app.browser.sign_in("carol", GOOD_PASSWORD).await;
    assert_see_other(&resp, "/account");
    // Already signed in: the sign-in page moves on instead of showing the form.
    assert_see_other(&app.browser.get("/signin").await, "/account");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_asks_for_confirmation_on_get() {
    let app = TestApp::spawn().await;
    app.create_user("dave", GOOD_PASSWORD).await;
    app.browser.sign_in("dave", GOOD_PASSWORD).await;

    let confirm = app.browser.get("/signout").await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let html = confirm.text().await.unwrap();
    assert!(html.contains("Sign out?"));
    // The GET changed nothing: still signed in.
    assert_eq!(app.browser.get("/account").await.status(), StatusCode::OK);

    let resp = app
        .browser
        .post_form("/signout", &[("csrf", &csrf_of(&html))])
        .await;
    assert_see_other(&resp, "/signin?signed_out=1");
    assert_see_other(&app.browser.get("/account").await, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_refuses_bad_input_with_a_message_on_the_page() {
    let app = TestApp::spawn().await;
    app.create_user("taken", GOOD_PASSWORD).await;
    let b = &app.browser;

    let cases = [
        (
            "x",
            "",
            GOOD_PASSWORD,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Usernames are 3 to 32 characters",
        ),
        (
            "valid_name",
            "not-an-email",
            GOOD_PASSWORD,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter an email address",
        ),
        (
            "valid_name",
            "",
            "short",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Use at least 8 characters.",
        ),
        (
            "valid_name",
            "",
            "password123",
            StatusCode::UNPROCESSABLE_ENTITY,
            "That password is too easy to guess. This is a very common password.",
        ),
        (
            "valid_name",
            "",
            "1q2w3e4r5t",
            StatusCode::UNPROCESSABLE_ENTITY,
            "That password is too easy to guess.",
        ),
        (
            "TAKEN",
            "",
            GOOD_PASSWORD,
            StatusCode::CONFLICT,
            "That username is taken.",
        ),
    ];
    for (username, email, password, status, message) in cases {
        let resp = b.sign_up(username, email, password).await;
        assert_eq!(resp.status(), status, "{username}/{email}/{password}");
        let html = resp.text().await.unwrap();
        assert!(html.contains(message), "{message} not in page");
        assert!(html.contains("role=\"alert\""));
        // The typed username comes back so the person can fix it; the password never does.
        assert!(
            !html.contains(&format!("value=\"{password}\"")),
            "password echoed"
        );
    }

    let csrf = b.csrf("/signup").await;
    let resp = b
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("username", "mismatch"),
                ("password", GOOD_PASSWORD),
                ("password_confirm", "correct horse battery staple"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("The two passwords are different.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_can_be_switched_off() {
    let app = TestApp::spawn_with(&[("KEYWARD_SIGNUP_ENABLED", "false")]).await;
    let resp = app.browser.get("/signup").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("Sign-up is closed"));
    let resp = app
        .browser
        .post_form("/signup", &[("username", "sneaky")])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let signin = app.browser.get("/signin").await.text().await.unwrap();
    assert!(!signin.contains("/signup"), "no link to a closed sign-up");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_served_with_their_stylesheet_and_no_script() {
    let app = TestApp::spawn().await;
    let html = app.browser.get("/signin").await.text().await.unwrap();
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/assets/style.css\">"));
    assert!(!html.contains("<script"));
    assert!(html.contains("<label for=\"username\">"));
    let css = app.browser.get("/assets/style.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains(":focus-visible"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_rehashes_a_password_stored_with_old_parameters() {
    let app = TestApp::spawn().await;
    let user = app.create_user("erin", GOOD_PASSWORD).await;
    // Pretend the hash was made under the weakest settings argon2 allows (8 KiB, one pass).
    let old = keyward::users::password::Argon2Settings {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let old_hasher = keyward::users::password::PasswordHasher::new(old, 1, 1).unwrap();
    let old_hash = old_hasher.hash(GOOD_PASSWORD).await.unwrap();
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    keyward::users::update_password_hash(&mut conn, user.id, &old_hash, app.clock().now())
        .await
        .unwrap();

    assert_see_other(
        &app.browser.sign_in("erin", GOOD_PASSWORD).await,
        "/account",
    );
    let stored = app.find_user(user.id).await.unwrap().password_hash;
    assert!(
        stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{stored}"
    );
    assert_ne!(stored, old_hash);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_name_the_app_that_asks_and_the_origin_it_returns_to() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app
        .register_client("webapp", crate::support::oauth::ClientSpec::default())
        .await;
    let b = &app.browser;
    let naming = "to continue to <strong>webapp app</strong> at https://app.example.com</p>";

    // Without an app asking, the pages name none.
    for path in ["/signin", "/signup"] {
        let page = b.get(path).await.text().await.unwrap();
        assert!(!page.contains("to continue to"), "{path}");
    }
    let pkce = crate::support::oauth::Pkce::new();
    let sent = b.get(&app.authorize_url(&client, &pkce, &[])).await;
    assert_see_other(&sent, "/signin");
    for path in ["/signin", "/signup"] {
        let page = b.get(path).await.text().await.unwrap();
        assert!(page.contains(naming), "{path}: {page}");
    }
    // A failed attempt keeps naming it.
    let wrong = b.sign_in("alice", "not the password").await;
    assert!(wrong.text().await.unwrap().contains(naming));
    let signed = b.sign_in("alice", GOOD_PASSWORD).await;
    let resume = crate::support::location(&signed).to_owned();
    let consent = b.get(&resume).await;
    let consent = b
        .get(crate::support::location(&consent))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        consent.contains("(which will take you back to https://app.example.com)"),
        "{consent}"
    );
    // Signed in, the app is forgotten: the next sign-in page (after signing out) names none.
    b.sign_out().await;
    let page = b.get("/signin").await.text().await.unwrap();
    assert!(!page.contains("to continue to"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_form_error_is_tied_to_its_field() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let b = &app.browser;

    let wrong = b.sign_in("alice", "not the password").await;
    let page = wrong.text().await.unwrap();
    assert!(page.contains(r#"id="form-error""#), "{page}");
    assert_eq!(
        page.matches(r#"aria-invalid="true" aria-describedby="form-error""#)
            .count(),
        2,
        "both fields point at the message: {page}"
    );

    let sign_up = async |password: &str, confirm: &str| {
        let csrf = b.csrf("/signup").await;
        let form = [
            ("csrf", csrf.as_str()),
            ("username", "grace"),
            ("email", ""),
            ("password", password),
            ("password_confirm", confirm),
        ];
        b.post_form("/signup", &form).await.text().await.unwrap()
    };
    let short = sign_up("short", "short").await;
    assert!(
        short.contains(r#"aria-describedby="password-error password-hint" aria-invalid="true""#),
        "{short}"
    );
    assert!(short.contains(r#"<p class="field-error" role="alert" id="password-error">"#));
    assert!(
        short.contains(r#"aria-describedby="username-hint">"#),
        "the username is fine: {short}"
    );
    assert_eq!(short.matches("aria-invalid").count(), 1, "{short}");
    let mismatch = sign_up(GOOD_PASSWORD, "correct horse battery!").await;
    assert!(
        mismatch.contains(r#"aria-invalid="true" aria-describedby="password_confirm-error""#),
        "{mismatch}"
    );
    assert_eq!(mismatch.matches("aria-invalid").count(), 1, "{mismatch}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_logout_page_names_the_app_only_with_its_registered_return_address() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let spec = crate::support::oauth::ClientSpec {
        post_logout: vec!["https://app.example.com/bye".to_owned()],
        ..Default::default()
    };
    app.register_client("webapp", spec).await;
    let b = &app.browser;
    b.sign_in("alice", GOOD_PASSWORD).await;
    let page = b
        .get(
            "/logout?client_id=webapp&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye",
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<strong>webapp app</strong> (https://app.example.com)"),
        "{page}"
    );
    // Naming a client proves nothing: without its return address, no name is shown.
    let page = b
        .get("/logout?client_id=webapp")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("An application"), "{page}");
    assert!(!page.contains("webapp app"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_product_name_and_logo_are_settings_on_every_page() {
    let dir = std::env::temp_dir().join(format!("keyward-logo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let logo = dir.join("acme.svg");
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="8"/></svg>"#;
    std::fs::write(&logo, svg).unwrap();
    let app = TestApp::spawn_with(&[
        ("KEYWARD_PRODUCT_NAME", "Acme ID"),
        ("KEYWARD_LOGO_FILE", logo.to_str().unwrap()),
    ])
    .await;
    let b = &app.browser;
    // A page, and an error page (rendered from the error, without the app's state).
    for (path, title) in [("/signin", "Sign in"), ("/no-such-page", "Page not found")] {
        let page = b.get(path).await.text().await.unwrap();
        assert!(
            page.contains(&format!("<title>{title} · Acme ID</title>")),
            "{path}: {page}"
        );
        assert!(page.contains(r#"<span class="brand-name">Acme ID</span>"#));
        assert!(page.contains(r#"<img class="app-logo" src="/assets/logo?v="#));
    }
    let served = b.get("/assets/logo").await;
    assert_eq!(served.headers()["content-type"], "image/svg+xml");
    assert_eq!(served.text().await.unwrap(), svg);

    // Refused at start: a file that is not an image, a name with a control character or too long.
    let gif = dir.join("acme.gif");
    std::fs::write(&gif, "GIF89a").unwrap();
    let refused = app
        .build_another(&[("KEYWARD_LOGO_FILE", gif.to_str().unwrap())])
        .await;
    assert!(refused.is_err_and(|e| e.to_string().contains("KEYWARD_LOGO_FILE")));
    for name in ["x\u{7}", &"n".repeat(65)] {
        let refused = app.build_another(&[("KEYWARD_PRODUCT_NAME", name)]).await;
        assert!(refused.is_err_and(|e| e.to_string().contains("KEYWARD_PRODUCT_NAME")));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // By default: Keyward, and no logo.
    let plain = TestApp::spawn().await;
    let page = plain.browser.get("/signin").await.text().await.unwrap();
    assert!(page.contains("<title>Sign in · Keyward</title>"), "{page}");
    assert!(!page.contains("app-logo"));
    assert_eq!(plain.browser.get("/assets/logo").await.status(), 404);
}
