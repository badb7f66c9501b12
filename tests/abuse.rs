//! Attackers and overload: the lockout under concurrency, rate limits per address and client.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::oauth::{ClientSpec, TestClient};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, join_all};

/// A client allowed the password grant (a legacy service signing its users in over the API).
async fn password_client(app: &TestApp) -> TestClient {
    let spec = ClientSpec {
        grants: vec!["password"],
        scopes: "openid",
        ..ClientSpec::default()
    };
    app.register_client("legacy", spec).await
}

async fn password_grant(app: &TestApp, client: &TestClient, user: &str, pw: &str) -> (u16, Value) {
    let resp = app
        .token_request(
            client,
            &[
                ("grant_type", "password"),
                ("username", user),
                ("password", pw),
                ("scope", "openid"),
            ],
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn count(answers: &[(u16, Value)], status: u16, description: &str) -> usize {
    answers
        .iter()
        .filter(|(s, b)| {
            *s == status && b["error_description"].as_str().unwrap_or("") == description
        })
        .count()
}

const WRONG: &str = "wrong username or password";
const LOCKED: &str = "too many failed attempts; try again later";

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_correct_sign_ins_at_once_lock_nothing() {
    // A generous request timeout: waiting attempts are answered within half of it.
    let app = TestApp::spawn_with(&[("KEYWARD_REQUEST_TIMEOUT", "120s")]).await;
    app.create_user("svc", GOOD_PASSWORD).await;
    let client = password_client(&app).await;
    let answers =
        join_all((0..32).map(|_| password_grant(&app, &client, "svc", GOOD_PASSWORD))).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 32, "{answers:?}");

    // Nothing is left counting against the user, and the page signs them in at once.
    assert_see_other(&app.browser.sign_in("svc", GOOD_PASSWORD).await, "/account");
    let browsers: Vec<_> = (0..12).map(|_| app.new_browser()).collect();
    let pages = join_all(browsers.iter().map(|b| b.sign_in("svc", GOOD_PASSWORD))).await;
    for page in &pages {
        assert_see_other(page, "/account");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_wrong_sign_ins_at_once_are_cut_off_at_the_threshold() {
    let app = TestApp::spawn_with(&[("KEYWARD_REQUEST_TIMEOUT", "120s")]).await;
    app.create_user("victim", GOOD_PASSWORD).await;
    let client = password_client(&app).await;
    let answers =
        join_all((0..32).map(|_| password_grant(&app, &client, "victim", "guess guess"))).await;
    // Exactly the threshold (5) were judged; everything else found the account locked.
    assert_eq!(count(&answers, 400, WRONG), 5, "{answers:?}");
    assert_eq!(count(&answers, 400, LOCKED), 27, "{answers:?}");
    // Locked for the owner too (no trusted device here), until the lock expires.
    let (_, body) = password_grant(&app, &client, "victim", GOOD_PASSWORD).await;
    assert_eq!(body["error_description"], LOCKED);
    app.clock().advance(time::Duration::seconds(31));
    let (status, _) = password_grant(&app, &client, "victim", GOOD_PASSWORD).await;
    assert_eq!(status, 200);
}

/// Posts `form` to `path` as `client` (Basic for confidential ones), claiming to come from
/// `from` through a proxy when given.
async fn post_as(
    app: &TestApp,
    path: &str,
    client: &TestClient,
    form: &[(&str, &str)],
    from: Option<&str>,
) -> reqwest::Response {
    let mut req = app.browser.client.post(format!("{}{path}", app.base));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match &client.secret {
        Some(secret) => req = req.basic_auth(&client.id, Some(secret)),
        None => form.push(("client_id", &client.id)),
    }
    if let Some(ip) = from {
        req = req.header("x-forwarded-for", ip);
    }
    req.form(&form).send().await.unwrap()
}

async fn assert_429_json(resp: reqwest::Response) {
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").cloned();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 429, "{text}");
    let secs: i64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

fn grant_as(user: &str) -> [(&str, &str); 4] {
    [
        ("grant_type", "password"),
        ("username", user),
        ("password", "Summer2026!"),
        ("scope", "openid"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn password_spraying_from_one_address_is_cut_off_at_the_limit() {
    let app = TestApp::spawn_with(&[("KEYWARD_LIMIT_SIGN_IN_PER_IP", "20/10m")]).await;
    app.create_user("owner", GOOD_PASSWORD).await;
    // The owner signed in on this browser before: a trusted device.
    let owners = app.new_browser();
    assert_see_other(&owners.sign_in("owner", GOOD_PASSWORD).await, "/account");
    owners.sign_out().await;
    let client = password_client(&app).await;
    let mut judged = 0;
    let mut limited = 0;
    for i in 0..150 {
        let user = format!("user{i}");
        let resp = post_as(&app, "/token", &client, &grant_as(&user), None).await;
        match resp.status().as_u16() {
            400 => judged += 1,
            429 => {
                limited += 1;
                assert_429_json(resp).await;
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!((judged, limited), (20, 130));
    // The page refuses this address too, before any password is checked...
    let page = app.new_browser().sign_in("owner", GOOD_PASSWORD).await;
    assert_eq!(page.status().as_u16(), 429);
    assert!(page.headers().contains_key("retry-after"));
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Too many failed sign-ins from your network")
    );
    // ...but not the owner's trusted browser.
    assert_see_other(&owners.sign_in("owner", GOOD_PASSWORD).await, "/account");
    // One more guess per interval (10m / 20 = 30 s), no burst.
    app.clock().advance(time::Duration::seconds(30));
    let statuses: Vec<u16> = [
        post_as(&app, "/token", &client, &grant_as("late1"), None).await,
        post_as(&app, "/token", &client, &grant_as("late2"), None).await,
    ]
    .iter()
    .map(|r| r.status().as_u16())
    .collect();
    assert_eq!(statuses, [400, 429]);

    // The block was audited once, not once per refusal.
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let events = keyward::audit::find_by_kind(&mut conn, "rate_limit.exceeded", 100)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        2,
        "one block, then one more after the interval"
    );
    assert_eq!(events[0].details["limit"], "sign_in_per_ip");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let limits = [
        ("KEYWARD_LIMIT_SIGN_IN_PER_IP", "3/10m"),
        ("KEYWARD_LIMIT_SIGN_IN_GLOBAL", "off"),
    ];
    // Not behind a trusted proxy: a client inventing X-Forwarded-For stays itself.
    let direct = TestApp::spawn_with(&limits).await;
    let client = password_client(&direct).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let from = format!("203.0.113.{i}");
        let resp = post_as(&direct, "/token", &client, &grant_as("x"), Some(&from)).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429]);

    // Behind a trusted proxy (loopback here): each forwarded address has its own count.
    let mut settings = limits.to_vec();
    settings.push(("KEYWARD_TRUSTED_PROXIES", "127.0.0.0/8, ::1"));
    let proxied = TestApp::spawn_with(&settings).await;
    let client = password_client(&proxied).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let from = format!("203.0.113.{i}");
        let resp = post_as(&proxied, "/token", &client, &grant_as("x"), Some(&from)).await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [400; 5]);
    for _ in 0..3 {
        let resp = post_as(
            &proxied,
            "/token",
            &client,
            &grant_as("x"),
            Some("198.51.100.1"),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 400);
    }
    // A spoofed entry to the left of the real one changes nothing.
    let spoofed = post_as(
        &proxied,
        "/token",
        &client,
        &grant_as("x"),
        Some("9.9.9.9, 198.51.100.1"),
    )
    .await;
    assert_eq!(spoofed.status().as_u16(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_from_many_addresses_hit_the_global_limit() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_LIMIT_SIGN_IN_PER_IP", "off"),
        ("KEYWARD_LIMIT_SIGN_IN_GLOBAL", "10/1m"),
        ("KEYWARD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    app.create_user("carol", GOOD_PASSWORD).await;
    let client = password_client(&app).await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let from = format!("198.51.100.{i}");
        let user = format!("user{i}");
        statuses.push(
            post_as(&app, "/token", &client, &grant_as(&user), Some(&from))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..10], [400; 10]);
    assert_eq!(statuses[10..], [429; 2]);
    // A right password from a new address is refused too while the spraying lasts.
    let resp = post_as(
        &app,
        "/token",
        &client,
        &[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", GOOD_PASSWORD),
            ("scope", "openid"),
        ],
        Some("192.0.2.99"),
    )
    .await;
    assert_429_json(resp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_codes_and_secrets_from_one_address_is_cut_off() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_LIMIT_TOKEN_PER_IP", "10/1m"),
        ("KEYWARD_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let client = app.register_client("web", ClientSpec::default()).await;
    let guess = |i: usize| format!("kwc_guess{i}");
    let mut errors = Vec::new();
    for i in 0..10 {
        let code = guess(i);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", crate::support::oauth::REDIRECT_URI),
            ("code_verifier", "x"),
        ];
        let resp = post_as(&app, "/token", &client, &form, Some("203.0.113.9")).await;
        errors.push(resp.json::<Value>().await.unwrap()["error"].clone());
    }
    assert_eq!(errors, vec![Value::from("invalid_grant"); 10]);
    // Now every token endpoint refuses this address, with a right secret or a wrong one.
    let from = Some("203.0.113.9");
    let form = [("grant_type", "client_credentials")];
    assert_429_json(post_as(&app, "/token", &client, &form, from).await).await;
    let wrong = TestClient {
        id: client.id.clone(),
        secret: Some("kwcs_wrong".to_owned()),
    };
    let token = [("token", "whatever")];
    assert_429_json(post_as(&app, "/introspect", &wrong, &token, from).await).await;
    assert_429_json(post_as(&app, "/revoke", &client, &token, from).await).await;
    // Another address is unaffected; its wrong secrets count as failures of its own.
    let other = Some("203.0.113.10");
    assert_eq!(
        post_as(&app, "/revoke", &client, &token, other)
            .await
            .status()
            .as_u16(),
        200
    );
    for _ in 0..10 {
        let resp = post_as(&app, "/introspect", &wrong, &token, other).await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    assert_429_json(post_as(&app, "/revoke", &client, &token, other).await).await;
    // Malformed requests are bugs, not guesses: they never count.
    let careless = Some("203.0.113.11");
    for _ in 0..20 {
        let form = [("grant_type", "authorization_code")];
        let resp = post_as(&app, "/token", &client, &form, careless).await;
        assert_eq!(resp.status().as_u16(), 400);
    }
    let resp = post_as(&app, "/revoke", &client, &token, careless).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confidential_client_failing_redemptions_is_limited_but_not_a_public_one() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_LIMIT_TOKEN_PER_IP", "off"),
        ("KEYWARD_LIMIT_TOKEN_PER_CLIENT", "5/1m"),
    ])
    .await;
    let spec = ClientSpec {
        grants: vec!["authorization_code", "refresh_token", "client_credentials"],
        ..ClientSpec::default()
    };
    let confidential = app.register_client("backend", spec).await;
    let public = app.register_spa().await;
    let bad_refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "kwr_guess"),
    ];
    for client in [&confidential, &public] {
        for _ in 0..5 {
            let resp = post_as(&app, "/token", client, &bad_refresh, None).await;
            assert_eq!(resp.status().as_u16(), 400);
        }
    }
    let cc = [("grant_type", "client_credentials")];
    assert_429_json(post_as(&app, "/token", &confidential, &cc, None).await).await;
    // Anyone can name a public client: it is never blocked for others' guesses.
    let resp = post_as(&app, "/token", &public, &bad_refresh, None).await;
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_ups_from_one_address_are_limited() {
    let app = TestApp::spawn_with(&[("KEYWARD_LIMIT_SIGN_UP_PER_IP", "3/1h")]).await;
    for i in 0..3 {
        let b = app.new_browser();
        assert_see_other(
            &b.sign_up(&format!("new{i}"), "", GOOD_PASSWORD).await,
            "/account",
        );
    }
    let resp = app.new_browser().sign_up("new3", "", GOOD_PASSWORD).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Too many new accounts from your network")
    );
    assert!(app.find_user_named("new3").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_share_the_count() {
    let app = TestApp::spawn_with(&[("KEYWARD_LIMIT_SIGN_IN_PER_IP", "5/10m")]).await;
    let other = app.another_instance(&[]).await;
    let client = password_client(&app).await;
    for _ in 0..3 {
        let resp = post_as(&app, "/token", &client, &grant_as("x"), None).await;
        assert_eq!(resp.status().as_u16(), 400);
    }
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            post_as(&other, "/token", &client, &grant_as("x"), None)
                .await
                .status()
                .as_u16(),
        );
    }
    // Five failures in all, whichever instance judged them: the sixth is refused.
    assert_eq!(statuses, [400, 400, 429]);
    // The first instance learns of the block at its next failure, at most one more judged.
    let first = post_as(&app, "/token", &client, &grant_as("x"), None)
        .await
        .status()
        .as_u16();
    let second = post_as(&app, "/token", &client, &grant_as("x"), None)
        .await
        .status()
        .as_u16();
    assert_eq!(second, 429);
    assert!(first == 400 || first == 429);
}

async fn session_rows(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::sessions;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    sessions::table.count().get_result(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_browsers_behind_one_address_all_start_a_sign_in_and_leave_no_row() {
    let app = TestApp::spawn().await;
    let client = app.register_client("web", ClientSpec::default()).await;
    let authorize = app.authorize_url(&client, &crate::support::oauth::Pkce::new(), &[]);
    // Cookie-less, as a script hammering the pages would be, and as a thousand new browsers
    // behind one office or carrier address are.
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let before = session_rows(&app).await;
    for i in 0..300 {
        let path = ["/signin", "/signup", "/account"][i % 3];
        let resp = bare
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert!(resp.status().as_u16() < 400, "{path}: {}", resp.status());
    }
    for i in 0..1000 {
        let resp = bare
            .get(format!("{}{authorize}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "browser {i}");
        assert_eq!(crate::support::location(&resp), "/signin");
        // Its pending sign-in travels in a sealed cookie, and the page names the app.
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        let pair = cookie.split(';').next().unwrap().to_owned();
        assert!(pair.starts_with("keyward_pending="), "{cookie}");
        let page = bare
            .get(format!("{}/signin", app.base))
            .header("cookie", pair)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "browser {i}");
        if i == 0 {
            assert!(page.text().await.unwrap().contains("web app"));
        }
    }
    assert_eq!(
        session_rows(&app).await,
        before,
        "no row per visitor: forms, redirects and pending sign-ins store nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_foreign_pending_cookie_is_ignored() {
    let app = TestApp::spawn().await;
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for forged in [
        "keyward_pending=garbage",
        "keyward_pending=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let page = bare
            .get(format!("{}/signin", app.base))
            .header("cookie", forged)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
    }
    // Another deployment's cookie (another KEK) opens nowhere else.
    let other = TestApp::spawn().await;
    let client = other.register_client("web", ClientSpec::default()).await;
    let authorize = other.authorize_url(&client, &crate::support::oauth::Pkce::new(), &[]);
    let resp = bare
        .get(format!("{}{authorize}", other.base))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = bare
        .get(format!("{}/signin", app.base))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert!(!page.text().await.unwrap().contains("web app"));
}

#[tokio::test(flavor = "multi_thread")]
async fn before_sign_in_nothing_is_stored_and_signing_in_starts_a_full_session() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use keyward::db::schema::sessions;
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = app.register_client("web", ClientSpec::default()).await;
    let now = app.clock().now();
    let b = app.new_browser();
    b.get(&app.authorize_url(&client, &crate::support::oauth::Pkce::new(), &[]))
        .await;
    let mut conn = keyward::db::connect(&app.state.db).await.unwrap();
    let ends: Vec<time::OffsetDateTime> = sessions::table
        .select(sessions::absolute_expires_at)
        .load(&mut conn)
        .await
        .unwrap();
    assert!(ends.is_empty(), "nothing stored before a sign-in: {ends:?}");
    // Signing in makes a new session with the full lifetime (7 days by default).
    assert_eq!(b.sign_in("alice", GOOD_PASSWORD).await.status(), 303);
    let ends: Vec<time::OffsetDateTime> = sessions::table
        .select(sessions::absolute_expires_at)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ends, [now + time::Duration::days(7)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_form_token_works_only_with_its_own_cookie() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let (one, two) = (app.new_browser(), app.new_browser());
    let token = one.csrf("/signin").await;
    let other_token = two.csrf("/signin").await;
    let form = |csrf: &str| {
        [
            ("csrf", csrf.to_owned()),
            ("username", "alice".to_owned()),
            ("password", GOOD_PASSWORD.to_owned()),
        ]
    };
    let post = |cookie: Option<String>, csrf: &str| {
        let mut req = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{}/signin", app.base))
            .form(&form(csrf));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("keyward_csrf={c}"));
        }
        req.send()
    };
    let cookie_one = one.cookie("keyward_csrf").expect("a CSRF cookie");
    let cookie_two = two.cookie("keyward_csrf").expect("a CSRF cookie");
    // No cookie, another visitor's cookie, another visitor's token, a made-up token: refused.
    for (cookie, csrf) in [
        (None, token.as_str()),
        (Some(cookie_two), token.as_str()),
        (Some(cookie_one.clone()), other_token.as_str()),
        (Some(cookie_one.clone()), cookie_one.as_str()),
    ] {
        let status = post(cookie.clone(), csrf).await.unwrap().status().as_u16();
        assert_eq!(status, 403, "{cookie:?} {csrf}");
    }
    // The right pair signs in.
    assert_eq!(
        post(Some(cookie_one), &token)
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_connection_busy_requests_are_shed_at_once_and_public_documents_still_served() {
    let app = TestApp::spawn_with(&[
        ("KEYWARD_DB_POOL_SIZE", "2"),
        ("KEYWARD_DB_POOL_WAIT", "50ms"),
    ])
    .await;
    let spec = ClientSpec {
        grants: vec!["authorization_code", "refresh_token", "client_credentials"],
        ..ClientSpec::default()
    };
    let client = app.register_client("backend", spec).await;
    // Everything the pool has, held as a long query would hold it (the app's own background
    // work may hold one for a moment: wait for it, never for a duration).
    let take = || async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Ok(conn) = keyward::db::connect(&app.state.db).await {
                return conn;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no connection came free"
            );
        }
    };
    let held = [take().await, take().await];
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", "kwr_x")];
    for form in [&refresh[..], &[("grant_type", "client_credentials")][..]] {
        let resp = post_as(&app, "/token", &client, form, None).await;
        assert_eq!(resp.status().as_u16(), 503);
        // Shed, not "the database is down": retry in a second, not five.
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    let page = app
        .new_browser()
        .get_with_cookie("/account", "keyward_session=AAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(page.status().as_u16(), 503);
    // The grants count as shed for want of a connection. The page's session load reaches the
    // pool through tower-sessions, whose error keeps only a message: it counts as unavailable.
    let scraped = crate::metrics::scrape(&app).await;
    assert_eq!(scraped[r#"keyward_load_shed_total{class="db_pool"}"#], 2);
    assert_eq!(scraped[r#"keyward_db_errors_total{kind="exhausted"}"#], 2);
    assert_eq!(scraped[r#"keyward_db_errors_total{kind="unavailable"}"#], 1);
    for path in [
        "/jwks.json",
        "/.well-known/openid-configuration",
        "/signin",
        "/healthz",
    ] {
        assert_eq!(
            app.new_browser().get(path).await.status().as_u16(),
            200,
            "{path}"
        );
    }
    drop(held);
    let resp = post_as(
        &app,
        "/token",
        &client,
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
}
