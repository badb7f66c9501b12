//! The management API (`/admin/v1/`) as a service's backend uses it: Keyward's own
//! `client_credentials` tokens, users created (once per `Idempotency-Key`), read, paged, changed
//! under `If-Match`, disabled, signed out, deleted; and every token that is not a live
//! management token with the right scope refused as RFC 6750 says.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::admin::{ALL_USERS, Admin, assert_problem, events_of};
use crate::support::cli::{keyward, stderr, stdout};
use crate::support::oauth::{ClientSpec, claims_of};
use crate::support::{GOOD_PASSWORD, TestApp, assert_see_other, join_all};

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_creates_reads_and_changes_users_with_its_own_token() {
    let app = TestApp::spawn().await;
    // Registered as the README says, through the CLI's rules.
    let out = keyward(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "Backend",
            "--id",
            "backend",
            "--grant",
            "client_credentials",
            "--scope",
            ALL_USERS,
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let registered: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let backend = crate::support::oauth::TestClient {
        id: "backend".into(),
        secret: Some(registered["client_secret"].as_str().unwrap().to_owned()),
    };
    let token = app.client_token(&backend, None).await;
    let claims = claims_of(&token);
    assert_eq!(
        claims["aud"],
        format!("{}/admin/v1", app.base),
        "audience-restricted"
    );
    assert_eq!(claims["sub"], "backend");
    let admin = app.admin_with(backend, &token);

    let created = admin
        .post(
            "/admin/v1/users",
            &json!({ "username": "alice", "email": "alice@example.com", "email_verified": true,
                     "roles": ["editor"], "password": GOOD_PASSWORD }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let text = created.text().await.unwrap();
    assert!(
        !text.contains("password") && !text.contains("argon2"),
        "{text}"
    );
    let alice: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        location,
        format!("/admin/v1/users/{}", alice["id"].as_str().unwrap())
    );
    assert_eq!(alice["roles"], json!(["editor"]));
    assert_eq!(alice["email_verified"], true);
    assert_see_other(
        &app.new_browser().sign_in("alice", GOOD_PASSWORD).await,
        "/account",
    );

    let read = admin.get(&location).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["etag"].to_str().unwrap(), etag);

    // A change under the tag it read succeeds; a second one under the same (now stale) tag is
    // refused: someone changed the user in between.
    let changed = admin
        .patch(
            &location,
            &json!({ "roles": ["editor", "admin"] }),
            Some(&etag),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let new_tag = changed.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, etag);
    let stale = admin
        .patch(&location, &json!({ "roles": [] }), Some(&etag))
        .await;
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    let user = app.user_named("alice").await.unwrap();
    assert_eq!(
        user.roles,
        ["editor", "admin"],
        "the stale change wrote nothing"
    );

    // Every change names the client that made it.
    for kind in ["user.created", "user.roles_set"] {
        let actors = events_of(&app, kind).await;
        assert!(
            !actors.is_empty() && actors.iter().all(|a| a == "client:backend"),
            "{kind}: {actors:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_checked_and_a_taken_name_is_a_conflict() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let alice = admin.create_user("alice", GOOD_PASSWORD).await;
    let location = format!("/admin/v1/users/{}", alice["id"].as_str().unwrap());
    // Email and name; a taken name is a conflict; bad values are 422.
    let moved = admin
        .patch(
            &location,
            &json!({ "email": "a@new.example", "username": "alicia" }),
            None,
        )
        .await;
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(
        (
            moved["username"].as_str(),
            moved["email_verified"].as_bool()
        ),
        (Some("alicia"), Some(false))
    );
    admin.create_user("bob", GOOD_PASSWORD).await;
    let conflict = admin
        .patch(&location, &json!({ "username": "BOB" }), None)
        .await;
    assert_problem(conflict, StatusCode::CONFLICT).await;
    for bad in [
        json!({ "username": "no spaces" }),
        json!({ "roles": ["a b"] }),
        json!({ "password_hash": "x" }),
    ] {
        let resp = admin.patch(&location, &bad, None).await;
        assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let cleared = admin
        .patch(&location, &json!({ "email": null }), None)
        .await;
    assert_eq!(cleared.json::<Value>().await.unwrap()["email"], Value::Null);

    for kind in ["user.renamed", "user.email_set"] {
        assert_eq!(events_of(&app, kind).await[0], "client:backend", "{kind}");
    }
    // No such user, and a malformed id, are both 404.
    for path in [
        "/admin/v1/users/00000000-0000-0000-0000-000000000000",
        "/admin/v1/users/nope",
    ] {
        assert_problem(admin.get(path).await, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_live_management_token_with_the_scope_is_accepted() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let reader = app.admin_client("reader", "admin:users.read").await;
    let path = "/admin/v1/users";
    assert_eq!(admin.get(path).await.status(), StatusCode::OK);

    // None: a bare challenge (RFC 6750 §3.1).
    let none = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"keyward-admin\""
    );
    assert_problem(none, StatusCode::UNAUTHORIZED).await;

    // The wrong scope: 403 naming it.
    let resp = reader
        .post(path, &json!({ "username": "x", "password": GOOD_PASSWORD }))
        .await;
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"admin:users.write\""),
        "{challenge}"
    );
    assert_problem(resp, StatusCode::FORBIDDEN).await;
    // A token asked with fewer scopes than the client has is held to them.
    let narrow = app
        .client_token(&admin.client, Some("admin:users.read"))
        .await;
    let resp = admin.with_token(&narrow).post(path, &json!({})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Tokens that are not management tokens at all: each 401 invalid_token.
    let api = app
        .register_client(
            "billing",
            ClientSpec {
                scopes: "invoices:read",
                grants: vec!["client_credentials"],
                audiences: vec!["https://api.example.com".into()],
                ..ClientSpec::default()
            },
        )
        .await;
    let other_audience = app.client_token(&api, None).await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let web = app.register_client("web", ClientSpec::default()).await;
    let person = app.tokens_for(&web, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let spa = app.register_spa().await;
    let public = app.tokens_for(&spa, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = app.client_token(&admin.client, None).await;
    assert_eq!(
        app.revoke(&admin.client, &revoked).await.status(),
        StatusCode::OK
    );
    for (what, token) in [
        ("garbage", "not-a-jwt"),
        ("another audience", other_audience.as_str()),
        ("a person's token", person.as_str()),
        ("a public client's token", public.as_str()),
        ("a revoked token", revoked.as_str()),
    ] {
        let resp = admin.with_token(token).get(path).await;
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    }

    // A client that loses the scope loses it at once, even with a token from before.
    let before = app.client_token(&reader.client, None).await;
    let out = keyward(
        &app,
        &["clients", "update", "reader", "--scope", "admin:audit.read"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        reader.with_token(&before).get(path).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Expired: past `exp` (and the leeway).
    app.clock().advance(time::Duration::hours(2));
    assert_eq!(admin.get(path).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn management_scopes_are_only_for_confidential_service_clients() {
    let app = TestApp::spawn().await;
    let create = |extra: &[&str]| {
        let mut args = vec!["clients", "create", "--name", "X"];
        args.extend_from_slice(extra);
        keyward(&app, &args, "")
    };
    for (what, extra) in [
        (
            "public",
            &[
                "--public",
                "--grant",
                "client_credentials",
                "--scope",
                "admin:users.read",
            ][..],
        ),
        (
            "code flow",
            &[
                "--redirect-uri",
                "https://app.example/cb",
                "--scope",
                "admin:users.read",
            ][..],
        ),
        (
            "mixed scopes",
            &[
                "--grant",
                "client_credentials",
                "--scope",
                "admin:users.read invoices:read",
            ][..],
        ),
        (
            "another audience",
            &[
                "--grant",
                "client_credentials",
                "--scope",
                "admin:users.read",
                "--audience",
                "https://api.example",
            ][..],
        ),
        (
            "unknown",
            &[
                "--grant",
                "client_credentials",
                "--scope",
                "admin:everything",
            ][..],
        ),
    ] {
        let out = create(extra);
        assert!(!out.status.success(), "{what} must be refused");
        assert!(stderr(&out).contains("admin:"), "{what}: {}", stderr(&out));
    }
    // Nor can an existing client of the code flow be given one.
    app.register_client("web", ClientSpec::default()).await;
    let out = keyward(
        &app,
        &[
            "clients",
            "update",
            "web",
            "--scope",
            "openid admin:users.read",
        ],
        "",
    );
    assert!(!out.status.success());
    // So a person's consent never grants one: /authorize refuses the scope it may not have.
    app.create_user("alice", GOOD_PASSWORD).await;
    let web = crate::support::oauth::TestClient {
        id: "web".into(),
        secret: None,
    };
    let pkce = crate::support::oauth::Pkce::new();
    let url = app.authorize_url(&web, &pkce, &[("scope", "openid admin:users.write")]);
    let resp = app.browser.get(&url).await;
    let params = crate::support::oauth::callback_params(&resp);
    assert_eq!(
        crate::support::oauth::param(&params, "error"),
        Some("invalid_scope")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_creation_retried_at_once_under_one_key_creates_one_user() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    for round in 0..5 {
        let body = json!({ "username": format!("user{round}"), "password": GOOD_PASSWORD });
        let key = format!("\"key-{round}\"");
        let answers = join_all((0..6).map(|_| admin.create_once(&key, &body))).await;
        let mut ids = Vec::new();
        for resp in answers {
            assert_eq!(
                resp.status(),
                StatusCode::CREATED,
                "round {round}: every retry gets the first answer"
            );
            ids.push(resp.json::<Value>().await.unwrap()["id"].clone());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "round {round}: one user");
    }
    let all: Value = admin.get("/admin/v1/users").await.json().await.unwrap();
    assert_eq!(all["users"].as_array().unwrap().len(), 5);
    assert_eq!(events_of(&app, "user.created").await.len(), 5);

    // The same key for another body is refused; without a key a duplicate is a conflict.
    let other = json!({ "username": "someone-else", "password": GOOD_PASSWORD });
    assert_problem(
        admin.create_once("\"key-0\"", &other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let again = json!({ "username": "user0", "password": GOOD_PASSWORD });
    assert_problem(
        admin.post("/admin/v1/users", &again).await,
        StatusCode::CONFLICT,
    )
    .await;
    // A refusal is kept for the key too; a bad key is a 400.
    let weak = json!({ "username": "weak", "password": "short" });
    let first = assert_problem(
        admin.create_once("k-weak", &weak).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let second = assert_problem(
        admin.create_once("k-weak", &weak).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(first["detail"], second["detail"]);
    assert!(
        first["detail"].as_str().unwrap().starts_with("password:"),
        "{first}"
    );
    assert_problem(
        admin.create_once("two words", &weak).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_while_users_are_added_lists_each_existing_user_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let mut existing = Vec::new();
    for n in 0..23 {
        existing.push(
            app.create_user(&format!("u{n:02}"), GOOD_PASSWORD)
                .await
                .id
                .to_string(),
        );
        // Several share a creation time: the id breaks the tie.
        if n % 3 == 0 {
            app.clock().advance(time::Duration::SECOND);
        }
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let path = match &cursor {
            None => "/admin/v1/users?limit=5".to_owned(),
            Some(c) => format!("/admin/v1/users?limit=5&cursor={c}"),
        };
        // Others sign up between pages.
        let add = (0..3).map(|i| {
            let name = format!("new{added}x{i}");
            admin.create_user_later(name)
        });
        let (page, _) = tokio::join!(admin.get(&path), join_all(add));
        added += 1;
        let page: Value = page.json().await.unwrap();
        for u in page["users"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(added < 100, "paging ends");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "nobody twice");
    for id in &existing {
        assert!(seen.contains(id), "{id} was skipped");
    }
    assert_problem(
        admin.get("/admin/v1/users?cursor=garbage").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        admin.get("/admin/v1/users?limit=x").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

impl Admin {
    /// Creates `name` (for concurrent use; the answer is checked by the caller's totals).
    async fn create_user_later(&self, name: String) -> StatusCode {
        let body = json!({ "username": name, "password": GOOD_PASSWORD });
        self.post("/admin/v1/users", &body).await.status()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_filters_by_name_address_role_and_status() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    for (name, email, roles) in [
        ("ann", "ann@example.com", json!(["admin"])),
        ("ben", "ben@example.com", json!(["editor"])),
        ("cat", "cat@example.com", json!(["admin", "editor"])),
    ] {
        let body =
            json!({ "username": name, "email": email, "roles": roles, "password": GOOD_PASSWORD });
        assert_eq!(
            admin.post("/admin/v1/users", &body).await.status(),
            StatusCode::CREATED
        );
    }
    let cat = app.user_named("cat").await.unwrap();
    let resp = admin
        .post(&format!("/admin/v1/users/{}:disable", cat.id), &json!({}))
        .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["disabled"], true);
    // Created at one instant of the test clock: their order is their ids', so compare sets.
    let names = |v: Value| -> Vec<String> {
        let mut names: Vec<String> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    for (query, expected) in [
        ("username=ANN", vec!["ann"]),
        ("email=Ben@Example.com", vec!["ben"]),
        ("role=admin", vec!["ann", "cat"]),
        ("role=editor&disabled=false", vec!["ben"]),
        ("disabled=true", vec!["cat"]),
    ] {
        let page: Value = admin
            .get(&format!("/admin/v1/users?{query}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(names(page), expected, "{query}");
    }
    // By the sub apps know: ann's is her id.
    let ann = app.user_named("ann").await.unwrap();
    let page: Value = admin
        .get(&format!("/admin/v1/users?sub={}", ann.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(page), ["ann"]);
    // Each read is on the trail, naming the client.
    let reads = events_of(&app, "admin.read").await;
    assert!(
        reads.len() >= 6 && reads.iter().all(|a| a == "client:backend"),
        "{reads:?}"
    );
    // What no user can have is refused, not sent to the database (a NUL byte was a 500).
    for bad in [
        "username=%00",
        "email=a%00@b.example",
        "role=%F0%9F%94%91",
        "sub=not%20a%20sub",
    ] {
        let resp = admin.get(&format!("/admin/v1/users?{bad}")).await;
        assert_problem(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn account_actions_cut_off_reset_and_delete() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let alice = admin.create_user("alice", GOOD_PASSWORD).await;
    let path = format!("/admin/v1/users/{}", alice["id"].as_str().unwrap());
    let web = app.register_client("web", ClientSpec::default()).await;
    let token = app.tokens_for(&web, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.userinfo(&token).await.status(), StatusCode::OK);

    // Disabled: her token ends, she cannot sign in; enabled: she can, the token stays ended.
    let resp = admin.post(&format!("{path}:disable"), &json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        app.userinfo(&token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_ne!(
        app.new_browser()
            .sign_in("alice", GOOD_PASSWORD)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let resp = admin.post(&format!("{path}:enable"), &json!({})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["disabled"], false);
    assert_see_other(
        &app.new_browser().sign_in("alice", GOOD_PASSWORD).await,
        "/account",
    );
    assert_eq!(
        app.userinfo(&token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Signed out everywhere.
    let token = app.tokens_for(&web, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = admin
        .post(&format!("{path}:signOutEverywhere"), &json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        app.userinfo(&token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A new password: the rules hold, then only it works.
    let weak = admin
        .post(
            &format!("{path}:setPassword"),
            &json!({ "password": "alice" }),
        )
        .await;
    assert_problem(weak, StatusCode::UNPROCESSABLE_ENTITY).await;
    let resp = admin
        .post(
            &format!("{path}:setPassword"),
            &json!({ "password": "a brand new passphrase" }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    app.assert_signs_in_only_with("alice", "a brand new passphrase", GOOD_PASSWORD)
        .await;

    // A reset mail needs an address.
    let resp = admin
        .post(&format!("{path}:sendPasswordReset"), &json!({}))
        .await;
    assert_problem(resp, StatusCode::CONFLICT).await;
    admin
        .patch(
            &path,
            &json!({ "email": "alice@example.com", "email_verified": true }),
            None,
        )
        .await;
    let resp = admin
        .post(&format!("{path}:sendPasswordReset"), &json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(events_of(&app, "user.reset_sent").await, ["client:backend"]);
    assert_problem(
        admin.post(&format!("{path}:explode"), &json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Deleted: gone, and the trail keeps who did it.
    assert_eq!(admin.delete(&path).await.status(), StatusCode::NO_CONTENT);
    assert_problem(admin.get(&path).await, StatusCode::NOT_FOUND).await;
    assert_eq!(events_of(&app, "user.deleted").await, ["client:backend"]);
    assert!(app.user_named("alice").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_import_reports_each_record_and_changes_nothing_when_repeated() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let batch = json!({ "users": [
        { "username": "alice", "email": "alice@example.com", "email_verified": true,
          "sub": "5f0c1c0e-8d1a-4c8e-9a43-2f6a0f3b7d10",
          "password_hash": crate::import::bcryptjs("alice's old password", 10) },
        { "username": "bob", "password_hash": "$1$md5$notsupported" },
        { "username": "carol", "password_hash": "x", "password": GOOD_PASSWORD },
        "not an object",
    ]});
    let resp = admin.post("/admin/v1/users:import", &batch).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("$2"), "no hash echoed: {text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    let outcomes: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["created", "refused", "refused", "refused"]);
    assert_eq!(
        report["results"][0]["id"],
        "5f0c1c0e-8d1a-4c8e-9a43-2f6a0f3b7d10"
    );
    assert_eq!(report["results"][3]["index"], 3);
    let again: Value = admin
        .post("/admin/v1/users:import", &batch)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["results"][0]["outcome"], "skipped");
    // Her old password signs her in, and is rehashed.
    assert_see_other(
        &app.new_browser()
            .sign_in("alice", "alice's old password")
            .await,
        "/account",
    );
    assert!(
        app.user_named("alice")
            .await
            .unwrap()
            .password_hash
            .starts_with("$argon2id$")
    );
    assert_eq!(events_of(&app, "user.imported").await, ["client:backend"]);
    let too_many = json!({ "users": vec![json!({}); 501] });
    assert_problem(
        admin.post("/admin/v1/users:import", &too_many).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/v1/users:import", app.base))
        .bearer_auth(&admin.token)
        .body("users=1")
        .send()
        .await
        .unwrap();
    assert_problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_can_be_turned_off_and_is_rate_limited_per_client() {
    let off = TestApp::spawn_with(&[("KEYWARD_ADMIN_API", "off")]).await;
    let admin = off.admin_client("backend", ALL_USERS).await;
    assert_eq!(
        admin.get("/admin/v1/users").await.status(),
        StatusCode::NOT_FOUND
    );

    let app = TestApp::spawn_with(&[("KEYWARD_LIMIT_ADMIN_PER_CLIENT", "3/1h")]).await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let other = app.admin_client("other", ALL_USERS).await;
    for _ in 0..3 {
        assert_eq!(admin.get("/admin/v1/users").await.status(), StatusCode::OK);
    }
    let resp = admin.get("/admin/v1/users").await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        other.get("/admin/v1/users").await.status(),
        StatusCode::OK,
        "per client"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_browsers_and_consents_are_listed_and_ended_and_the_trail_read() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client("backend", ALL_USERS).await;
    let auditor = app.admin_client("auditor", "admin:audit.read").await;
    let alice = app.create_user("alice", GOOD_PASSWORD).await;
    let base = format!("/admin/v1/users/{}", alice.id);

    // Two browsers: one is signed out by handle, then every one.
    let (one, two) = (app.new_browser(), app.new_browser());
    assert_see_other(&one.sign_in("alice", GOOD_PASSWORD).await, "/account");
    assert_see_other(&two.sign_in("alice", GOOD_PASSWORD).await, "/account");
    let listed: Value = admin
        .get(&format!("{base}/sessions"))
        .await
        .json()
        .await
        .unwrap();
    let handles: Vec<String> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(handles.len(), 2);
    let ended: Value = admin
        .delete(&format!("{base}/sessions/{}", handles[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ended["ended"], 1);
    let signed_in = |b: &crate::support::Browser| {
        let b = b.clone();
        async move { b.get("/account").await.status() == StatusCode::OK }
    };
    assert_eq!(
        [signed_in(&one).await, signed_in(&two).await]
            .iter()
            .filter(|s| **s)
            .count(),
        1
    );
    let ended: Value = admin
        .delete(&format!("{base}/sessions"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ended["ended"], 1);
    assert!(!signed_in(&one).await && !signed_in(&two).await);

    // A consent, withdrawn: the app's token ends with it.
    let web = app.register_client("web", ClientSpec::default()).await;
    let token = app.tokens_for(&web, "openid").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let consents: Value = admin
        .get(&format!("{base}/consents"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(consents["consents"][0]["client_id"], "web");
    let resp = admin.delete(&format!("{base}/consents/web")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.userinfo(&token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_problem(
        admin.delete(&format!("{base}/consents/web")).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    read_the_trail(&admin, &auditor, alice.id).await;
}

/// The trail of the test above: the auditor reads it, newest first, filtered and paged; the
/// users client cannot.
async fn read_the_trail(admin: &Admin, auditor: &Admin, alice: uuid::Uuid) {
    let path = format!("/admin/v1/audit-events?user_id={alice}");
    assert_eq!(admin.get(&path).await.status(), StatusCode::FORBIDDEN);
    let trail: Value = auditor.get(&path).await.json().await.unwrap();
    let kinds: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "consent.revoked", "{kinds:?}");
    assert!(
        kinds.contains(&"session.ended") && kinds.contains(&"consent.granted"),
        "{kinds:?}"
    );
    let ended: Value = auditor
        .get(&format!("{path}&kind=session.ended&limit=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ended["events"][0]["actor"], "client:backend");
    let cursor = ended["next_cursor"].as_str().unwrap();
    let older: Value = auditor
        .get(&format!(
            "{path}&kind=session.ended&limit=1&cursor={cursor}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(older["events"].as_array().unwrap().len(), 1);
    assert_ne!(older["events"][0]["id"], ended["events"][0]["id"]);
    for bad in [
        "kind=DROP%20TABLE",
        "since=yesterday",
        "client_id=%00",
        "user_id=alice",
    ] {
        let resp = auditor.get(&format!("/admin/v1/audit-events?{bad}")).await;
        assert_problem(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_manages_apps_but_never_a_management_client() {
    let app = TestApp::spawn().await;
    let ops = app
        .admin_client("ops", "admin:clients.read admin:clients.write")
        .await;
    let users_only = app.admin_client("people", ALL_USERS).await;
    assert_eq!(
        users_only.get("/admin/v1/clients").await.status(),
        StatusCode::FORBIDDEN
    );

    let billing = json!({ "name": "Billing", "client_id": "billing", "grant_types": ["client_credentials"],
                          "scope": "invoices:read", "audiences": ["https://api.example.com"] });
    let created = ops.post("/admin/v1/clients", &billing).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = created.json().await.unwrap();
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kwcs_"));
    let service = crate::support::oauth::TestClient {
        id: "billing".into(),
        secret: Some(secret.clone()),
    };
    app.client_token(&service, None).await;
    let again = ops.post("/admin/v1/clients", &billing).await;
    assert_problem(again, StatusCode::CONFLICT).await;
    let bad = json!({ "name": "Evil", "redirect_uris": ["http://evil.example/cb"] });
    assert_problem(
        ops.post("/admin/v1/clients", &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let listing = ops.get("/admin/v1/clients").await.text().await.unwrap();
    assert!(
        listing.contains("\"billing\"") && !listing.contains("kwcs_"),
        "{listing}"
    );

    // Changed under the tag it read; a stale tag changes nothing.
    let path = "/admin/v1/clients/billing";
    let renamed = ops
        .patch(path, &json!({ "name": "Billing v2" }), Some(&etag))
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let stale = ops.patch(path, &json!({ "name": "x" }), Some(&etag)).await;
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;

    // A new secret: the old one stops working.
    let rotated: Value = ops
        .post(&format!("{path}:rotateSecret"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap();
    // Instances forget a cached client within KEYWARD_KEY_RELOAD (the README's promise).
    crate::support::wait_until("the old secret is refused", || async {
        let old = app
            .token_request(&service, &[("grant_type", "client_credentials")])
            .await;
        old.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    let service = crate::support::oauth::TestClient {
        id: "billing".into(),
        secret: Some(new_secret.to_owned()),
    };
    app.client_token(&service, None).await;

    refuse_management_changes(&ops, path).await;

    // Deleted: a cut-off, its tokens end; the trail names the client that acted.
    let token = app.client_token(&service, None).await;
    assert_eq!(ops.delete(path).await.status(), StatusCode::NO_CONTENT);
    assert_problem(ops.get(path).await, StatusCode::NOT_FOUND).await;
    // Asked by the API the token was for (the deleted client itself may still be cached).
    let api = app
        .register_client(
            "invoices-api",
            ClientSpec {
                grants: vec!["client_credentials"],
                scopes: "x",
                audiences: vec!["https://api.example.com".into()],
                ..ClientSpec::default()
            },
        )
        .await;
    let answer = app.introspect(&api, &token).await;
    assert_eq!(answer["active"], false);
    for kind in [
        "client.created",
        "client.updated",
        "client.secret_rotated",
        "client.deleted",
    ] {
        assert_eq!(events_of(&app, kind).await, ["client:ops"], "{kind}");
    }
}

/// Management scopes and management clients stay the operator's (the CLI's).
async fn refuse_management_changes(ops: &Admin, path: &str) {
    let escalate = json!({ "name": "Root", "grant_types": ["client_credentials"], "scope": "admin:users.write" });
    assert_problem(
        ops.post("/admin/v1/clients", &escalate).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let widen = ops
        .patch(
            path,
            &json!({ "scope": "invoices:read admin:users.read" }),
            None,
        )
        .await;
    assert_problem(widen, StatusCode::FORBIDDEN).await;
    for (what, resp) in [
        (
            "change",
            ops.patch("/admin/v1/clients/people", &json!({ "name": "x" }), None)
                .await,
        ),
        (
            "rotate",
            ops.post("/admin/v1/clients/people:rotateSecret", &json!({}))
                .await,
        ),
        ("delete", ops.delete("/admin/v1/clients/ops").await),
    ] {
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
    }
}
