//! Every security rule of the hosted pages, each shown failing for an attacker.

use reqwest::StatusCode;
use time::Duration;

use crate::support::oauth::{ClientSpec, Pkce};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, csrf_of, location};

const WRONG: &str = "not the password";

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.create_user("frank", GOOD_PASSWORD).await;

    let wrong = app.browser.sign_in("frank", WRONG).await;
    let unknown = app.new_browser().sign_in("nobody", WRONG).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let strip = |html: String| {
        // Equal but for the per-session CSRF token and the username typed back.
        let token_start = html.find("name=\"csrf\" value=\"").unwrap();
        html[..token_start]
            .replace("frank", "X")
            .replace("nobody", "X")
    };
    let (a, b) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert!(a.contains("Wrong username or password."));
    assert_eq!(strip(a), strip(b));
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_lock_the_username_until_the_lock_expires() {
    let app = TestApp::spawn().await;
    app.create_user("grace", GOOD_PASSWORD).await;
    let attacker = app.new_browser();

    for _ in 0..5 {
        assert_eq!(
            attacker.sign_in("grace", WRONG).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password is refused without being checked.
    let locked = attacker.sign_in("grace", GOOD_PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.headers()["retry-after"], "30");
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many failed attempts.")
    );

    app.clock().advance(Duration::seconds(31));
    assert_see_other(&attacker.sign_in("grace", GOOD_PASSWORD).await, "/account");

    // Success resets the streak: one more failure does not lock.
    let again = app.new_browser();
    assert_eq!(
        again.sign_in("grace", WRONG).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_see_other(&again.sign_in("grace", GOOD_PASSWORD).await, "/account");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lock_doubles_with_each_further_failure_up_to_the_cap() {
    let app = TestApp::spawn_with(&[("KEYWARD_LOCKOUT_MAX", "2m")]).await;
    let b = app.new_browser();
    let mut retry_afters = Vec::new();
    for _ in 0..5 {
        b.sign_in("henry", WRONG).await;
    }
    for _ in 0..4 {
        let locked = b.sign_in("henry", WRONG).await;
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: i64 = locked.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        retry_afters.push(secs);
        app.clock().advance(Duration::seconds(secs + 1));
        assert_eq!(
            b.sign_in("henry", WRONG).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(retry_afters, [30, 60, 120, 120]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_usernames_lock_too_so_a_lock_reveals_nothing() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        app.browser.sign_in("ghost", WRONG).await;
    }
    assert_eq!(
        app.browser.sign_in("ghost", WRONG).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attacker_cannot_lock_the_owner_out_of_a_browser_they_signed_in_on() {
    let app = TestApp::spawn().await;
    app.create_user("ivy", GOOD_PASSWORD).await;
    let owner = app.new_browser();
    assert_see_other(&owner.sign_in("ivy", GOOD_PASSWORD).await, "/account");
    assert!(
        owner.cookie("keyward_device").is_some(),
        "device cookie set at sign-in"
    );
    owner.sign_out().await;

    let attacker = app.new_browser();
    for _ in 0..8 {
        attacker.sign_in("ivy", WRONG).await;
    }
    assert_eq!(
        attacker.sign_in("ivy", GOOD_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The owner's browser is trusted for this account and gets through the lock.
    assert_see_other(&owner.sign_in("ivy", GOOD_PASSWORD).await, "/account");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stolen_device_cookie_does_not_help_with_another_account() {
    let app = TestApp::spawn().await;
    app.create_user("jack", GOOD_PASSWORD).await;
    app.create_user("kate", GOOD_PASSWORD).await;
    let b = app.new_browser();
    assert_see_other(&b.sign_in("jack", GOOD_PASSWORD).await, "/account");
    b.sign_out().await;
    for _ in 0..5 {
        b.sign_in("kate", WRONG).await;
    }
    assert_eq!(
        b.sign_in("kate", GOOD_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_the_right_csrf_token_are_refused() {
    let app = TestApp::spawn().await;
    app.create_user("liam", GOOD_PASSWORD).await;
    let b = &app.browser;
    b.get("/signin").await; // a session exists, so only the token is wrong

    let missing = b
        .post_form(
            "/signin",
            &[("username", "liam"), ("password", GOOD_PASSWORD)],
        )
        .await;
    let wrong = b
        .post_form(
            "/signin",
            &[
                ("csrf", "forged"),
                ("username", "liam"),
                ("password", GOOD_PASSWORD),
            ],
        )
        .await;
    let other_session = app.new_browser().csrf("/signin").await;
    let foreign = b
        .post_form(
            "/signin",
            &[
                ("csrf", &other_session),
                ("username", "liam"),
                ("password", GOOD_PASSWORD),
            ],
        )
        .await;
    for resp in [missing, wrong, foreign] {
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.text().await.unwrap().contains("This form has expired"));
    }
    assert_see_other(&b.get("/account").await, "/signin");

    // Sign-out is a POST with a token too: a cross-site form cannot sign anyone out.
    assert_see_other(&b.sign_in("liam", GOOD_PASSWORD).await, "/account");
    assert_eq!(
        b.post_form("/signout", &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(b.get("/account").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_id_changes_at_sign_in_and_the_old_one_is_dead() {
    let app = TestApp::spawn().await;
    app.create_user("mia", GOOD_PASSWORD).await;
    let client = app.register_client("web", ClientSpec::default()).await;
    let b = &app.browser;
    // Signed in once; an app then asks for a fresh sign-in (prompt=login) on that session.
    assert_see_other(&b.sign_in("mia", GOOD_PASSWORD).await, "/account");
    let authorize = app.authorize_url(&client, &Pkce::new(), &[("prompt", "login")]);
    assert_see_other(&b.get(&authorize).await, "/signin");
    let csrf = b.csrf("/signin").await;
    let before = b.cookie("keyward_session").expect("session before sign-in");
    let resp = b
        .post_form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("username", "mia"),
                ("password", GOOD_PASSWORD),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "signed in");
    let after = b.cookie("keyward_session").expect("session after sign-in");
    assert_ne!(before, after, "fixation: the id must change at sign-in");

    // A client still holding the pre-sign-in id is not signed in.
    let resp = b
        .get_with_cookie("/account", &format!("keyward_session={before}"))
        .await;
    assert_see_other(&resp, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_kills_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    app.create_user("noah", GOOD_PASSWORD).await;
    let b = &app.browser;
    b.sign_in("noah", GOOD_PASSWORD).await;
    let id = b.cookie("keyward_session").unwrap();
    b.sign_out().await;

    // Replaying the old cookie (stolen before sign-out) gets nowhere.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/account", app.base))
        .header("cookie", format!("keyward_session={id}"))
        .send()
        .await
        .unwrap();
    assert_see_other(&replay, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_in_the_request_can_choose_where_sign_in_redirects() {
    let app = TestApp::spawn().await;
    app.create_user("olivia", GOOD_PASSWORD).await;
    for query in [
        "?return_to=https://evil.example/",
        "?next=//evil.example",
        "?redirect_uri=https://evil.example",
        "?return_to=/%5Cevil.example",
    ] {
        let b = app.new_browser();
        let page = b.get(&format!("/signin{query}")).await;
        let csrf = crate::support::csrf_of(&page.text().await.unwrap());
        let url = format!("/signin{query}");
        let resp = b
            .post_form(
                &url,
                &[
                    ("csrf", &csrf),
                    ("username", "olivia"),
                    ("password", GOOD_PASSWORD),
                ],
            )
            .await;
        assert_eq!(location(&resp), "/account", "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_are_on_every_page_including_errors() {
    let app = TestApp::spawn().await;
    let b = &app.browser;
    let not_found = b.get("/no/such/page").await;
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    let forbidden = b.post_form("/signin", &[("csrf", "x")]).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    for resp in [
        b.get("/signin").await,
        b.get("/signup").await,
        not_found,
        forbidden,
    ] {
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn session_and_device_cookies_are_httponly_and_lax() {
    let app = TestApp::spawn().await;
    app.create_user("paul", GOOD_PASSWORD).await;
    let resp = app.browser.sign_in("paul", GOOD_PASSWORD).await;
    let cookies: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in cookies {
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("SameSite=Lax"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
        // Plain http on loopback: no Secure (the browser would drop it).
        assert!(!c.contains("Secure"), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_cookies_are_secure_and_host_prefixed() {
    let app = TestApp::spawn_with(&[("KEYWARD_ISSUER", "https://id.example.com")]).await;
    let client = app.register_client("web", ClientSpec::default()).await;
    let pending = app
        .browser
        .get(&app.authorize_url(&client, &Pkce::new(), &[]))
        .await;
    let form = app.new_browser().get("/signin").await;
    for (resp, name) in [
        (pending, "__Host-keyward_pending="),
        (form, "__Host-keyward_csrf="),
    ] {
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with(name), "{cookie}");
        assert!(cookie.contains("Secure"));
        assert!(!cookie.contains("Domain="));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overlong_password_is_refused_before_hashing() {
    let app = TestApp::spawn().await;
    app.create_user("quinn", GOOD_PASSWORD).await;
    let long = "a".repeat(1025);
    let resp = app.browser.sign_up("rita", "", &long).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Use at most 1024 characters.")
    );
    let resp = app.browser.sign_in("quinn", &"b".repeat(4000)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_form_gets_413_as_a_page() {
    let app = TestApp::spawn().await;
    let csrf = app.browser.csrf("/signin").await;
    let huge = "x".repeat(100 * 1024);
    let resp = app
        .browser
        .post_form(
            "/signin",
            &[("csrf", &csrf), ("username", &huge), ("password", "x")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.text().await.unwrap().contains("too much text"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_cannot_sign_in_and_loses_open_sessions() {
    let app = TestApp::spawn().await;
    let user = app.create_user("sam", GOOD_PASSWORD).await;
    let open = app.new_browser();
    assert_see_other(&open.sign_in("sam", GOOD_PASSWORD).await, "/account");

    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    assert!(
        keyward::users::update_disabled(
            &mut conn,
            user.id,
            &keyward::audit::Actor::cli(),
            app.clock().now()
        )
        .await
        .unwrap()
    );

    assert_see_other(&open.get("/account").await, "/signin");
    // The right password of a disabled account confirms nothing: the answer is the wrong
    // password's, word for word.
    let right = app.new_browser().sign_in("sam", GOOD_PASSWORD).await;
    let wrong = app.new_browser().sign_in("sam", WRONG).await;
    assert_eq!(right.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // Each page has its own CSRF token; apart from that they are the same page.
    let page = |html: String| html.replace(&csrf_of(&html), "");
    let right = page(right.text().await.unwrap());
    assert!(right.contains("Wrong username or password."), "{right}");
    assert_eq!(right, page(wrong.text().await.unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_stored_only_as_hashes() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::{sessions, trusted_devices};
    use keyward::tokens::opaque::TokenHash;

    let app = TestApp::spawn().await;
    app.create_user("tina", GOOD_PASSWORD).await;
    app.browser.sign_in("tina", GOOD_PASSWORD).await;
    let session_id = app.browser.cookie("keyward_session").unwrap();
    let device = app.browser.cookie("keyward_device").unwrap();

    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let hashes: Vec<TokenHash> = sessions::table
        .select(sessions::id_hash)
        .load(&mut conn)
        .await
        .unwrap();
    assert!(hashes.contains(&TokenHash::of(&session_id)));
    let data: Vec<Vec<u8>> = sessions::table
        .select(sessions::data)
        .load(&mut conn)
        .await
        .unwrap();
    assert!(
        data.iter()
            .all(|d| !String::from_utf8_lossy(d).contains(&session_id))
    );
    let devices: Vec<TokenHash> = trusted_devices::table
        .select(trusted_devices::token_hash)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(devices, [TokenHash::of(&device)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_and_failures_are_audited_with_the_address_and_no_secret() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::audit_events;
    let app = TestApp::spawn().await;
    let user = app.create_user("uri", GOOD_PASSWORD).await;
    app.new_browser().sign_in("uri", WRONG).await;
    app.new_browser().sign_in("uri", GOOD_PASSWORD).await;
    // A password pasted into the username field is not a valid username: not recorded.
    app.new_browser()
        .sign_in(GOOD_PASSWORD, GOOD_PASSWORD)
        .await;

    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let rows: Vec<(
        String,
        Option<uuid::Uuid>,
        Option<ipnet::IpNet>,
        serde_json::Value,
    )> = audit_events::table
        .filter(audit_events::kind.like("signin.%"))
        .order(audit_events::id.asc())
        .select((
            audit_events::kind,
            audit_events::user_id,
            audit_events::ip,
            audit_events::details,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].0, "signin.failed");
    assert_eq!(rows[0].3["username"], "uri");
    assert_eq!(rows[1].0, "signin.succeeded");
    assert_eq!(rows[1].1, Some(user.id));
    assert!(
        rows.iter()
            .all(|r| r.2.is_some_and(|ip| ip.addr().is_loopback()))
    );
    assert!(rows[2].3["username"].is_null());
    let all = serde_json::to_string(&rows.iter().map(|r| &r.3).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains(GOOD_PASSWORD) && !all.contains(WRONG));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_in_use_lives_on_and_an_idle_one_ends() {
    let app = TestApp::spawn_with(&[("KEYWARD_SESSION_IDLE_TTL", "1h")]).await;
    app.create_user("nora", GOOD_PASSWORD).await;
    let b = &app.browser;
    assert_see_other(&b.sign_in("nora", GOOD_PASSWORD).await, "/account");
    // Reading pages keeps it alive, though reading writes nothing to the session itself.
    for _ in 0..5 {
        app.clock().advance(Duration::minutes(50));
        assert_eq!(b.get("/account").await.status(), StatusCode::OK);
    }
    // An hour and a minute without a request: over.
    app.clock().advance(Duration::minutes(61));
    assert_see_other(&b.get("/account").await, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_session_still_ends_its_absolute_lifetime_after_sign_in() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_SESSION_IDLE_TTL", "1h"),
        ("KEYWARD_SESSION_ABSOLUTE_TTL", "3h"),
    ])
    .await;
    app.create_user("nora", GOOD_PASSWORD).await;
    let b = &app.browser;
    assert_see_other(&b.sign_in("nora", GOOD_PASSWORD).await, "/account");
    for _ in 0..5 {
        app.clock().advance(Duration::minutes(35));
        assert_eq!(b.get("/account").await.status(), StatusCode::OK);
    }
    // 2 h 55 min in, still in use; at 3 h 5 min it is over, however busy.
    app.clock().advance(Duration::minutes(10));
    assert_see_other(&b.get("/account").await, "/signin");
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_a_session_writes_at_most_once_a_minute() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::sessions;
    let app = TestApp::spawn().await;
    let user = app.create_user("nora", GOOD_PASSWORD).await;
    let b = &app.browser;
    assert_see_other(&b.sign_in("nora", GOOD_PASSWORD).await, "/account");
    let expiry = || async {
        let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
        sessions::table
            .filter(sessions::user_id.eq(user.id))
            .select(sessions::expires_at)
            .first::<time::OffsetDateTime>(&mut conn)
            .await
            .unwrap()
    };
    let first = expiry().await;
    app.clock().advance(Duration::seconds(30));
    b.get("/account").await;
    assert_eq!(expiry().await, first, "half a minute later: no write");
    app.clock().advance(Duration::seconds(31));
    b.get("/account").await;
    assert_eq!(
        expiry().await,
        first + Duration::seconds(61),
        "a minute later: touched"
    );
}
