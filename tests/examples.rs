//! The relying-party examples, run against a real Keyward: `examples/notes-api` (Express + jose).

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::oauth::{ClientSpec, Pkce, TestClient};
use crate::support::{GOOD_PASSWORD, TestApp};

const AUDIENCE: &str = "https://notes.example";

/// notes-api on a free port, trusting `app`; killed when dropped.
struct NotesApi {
    base: String,
    _child: tokio::process::Child,
}

async fn start_notes_api(app: &TestApp) -> NotesApi {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/notes-api");
    start_notes_api_with(app, dir, &[]).await
}

/// notes-api with extra settings.
async fn start_notes_api_with(app: &TestApp, dir: &str, env: &[(&str, &str)]) -> NotesApi {
    let mut child = tokio::process::Command::new("node")
        .arg("server.js")
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("KEYWARD_ISSUER", &app.base)
        .env("NOTES_AUDIENCE", AUDIENCE)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (make test installs the example's dependencies)");
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .unwrap()
        .expect("notes-api prints where it listens");
    let base = line.rsplit(' ').next().expect("an address").to_owned();
    NotesApi {
        base,
        _child: child,
    }
}

impl NotesApi {
    /// `GET path`, with the bearer token if one is given.
    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

/// A user's access token for notes-api, through the real code flow (with `resource`).
async fn user_token(app: &TestApp, client: &TestClient, scope: &str) -> String {
    let pkce = Pkce::new();
    let code = app
        .code_for(client, &pkce, &[("scope", scope), ("resource", AUDIENCE)])
        .await;
    let resp = app.exchange_code(client, &code, &pkce.verifier).await;
    let body: Value = resp.json().await.unwrap();
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// Gives user `id` the `admin` role (a fixture, as `keyward users set-roles` would).
async fn make_admin(app: &TestApp, id: uuid::Uuid) {
    let mut conn = app.conn().await;
    keyward::users::update_roles(
        &mut conn,
        id,
        &keyward::users::name::Role::parse_all(&["admin"]).unwrap(),
        &keyward::audit::Actor::cli(),
        app.clock().now(),
    )
    .await
    .unwrap();
}

/// A first-party app allowed notes-api's scopes and audience.
async fn notes_client(app: &TestApp) -> TestClient {
    let spec = ClientSpec {
        first_party: true,
        scopes: "openid notes:read notes:write",
        audiences: vec![AUDIENCE.to_owned()],
        grants: vec!["authorization_code", "client_credentials"],
        ..ClientSpec::default()
    };
    app.register_client("notes-web", spec).await
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_api_accepts_keyward_tokens_for_it_with_the_scope_and_role_it_needs() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice", GOOD_PASSWORD).await;
    let client = notes_client(&app).await;
    let api = start_notes_api(&app).await;
    let http = reqwest::Client::new();

    // No token: a bare challenge.
    let none = api.get("/notes", None).await;
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"notes\"");

    let read = user_token(&app, &client, "openid notes:read").await;
    let ok = api.get("/notes", Some(&read)).await;
    assert_eq!(ok.status().as_u16(), 200);
    let write = http
        .post(format!("{}/notes", api.base))
        .bearer_auth(&read)
        .json(&serde_json::json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status().as_u16(), 403);
    let challenge = write.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"notes:write\""), "{challenge}");

    // The admin route needs the role: refused, then allowed once alice has it.
    assert_eq!(
        api.get("/admin/notes", Some(&read)).await.status().as_u16(),
        403
    );
    make_admin(&app, alice.id).await;
    let admin = user_token(&app, &client, "openid notes:read").await;
    assert_eq!(
        api.get("/admin/notes", Some(&admin))
            .await
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_api_refuses_id_tokens_other_apis_tokens_and_forgeries() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = notes_client(&app).await;
    let api = start_notes_api(&app).await;
    let read = user_token(&app, &client, "openid notes:read").await;
    // Tokens that are not access tokens for this API are refused: an ID token, a token minted
    // for another API (with the right scope), a forged one.
    let body = app.tokens_for(&client, "openid notes:read").await;
    let id_token = body["id_token"].as_str().unwrap().to_owned();
    let reports = ClientSpec {
        scopes: "notes:read",
        audiences: vec!["https://reports.example".to_owned()],
        grants: vec!["client_credentials"],
        ..ClientSpec::default()
    };
    let reports = app.register_client("reports", reports).await;
    let body: Value = app
        .token_request(&reports, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    let other_audience = body["access_token"].as_str().unwrap().to_owned();
    let mut forged = read.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    for (what, token) in [
        ("id token", &id_token),
        ("another API's", &other_audience),
        ("forged", &forged),
    ] {
        let resp = api.get("/notes", Some(token)).await;
        assert_eq!(resp.status().as_u16(), 401, "{what}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_resource_server_example_verifies_keyward_tokens() {
    let app = TestApp::spawn().await;
    app.create_user("alice", GOOD_PASSWORD).await;
    let client = notes_client(&app).await;
    // Built by `cargo test` with the tests, next to them: target/<profile>/examples/.
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let mut child = tokio::process::Command::new(examples.join("resource_server"))
        .env("KEYWARD_ISSUER", &app.base)
        .env("API_AUDIENCE", AUDIENCE)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example is built with the tests");
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .unwrap()
        .expect("it prints where it listens");
    let api = NotesApi {
        base: line.rsplit(' ').next().unwrap().to_owned(),
        _child: child,
    };
    assert_eq!(api.get("/hello", None).await.status().as_u16(), 401);
    let token = user_token(&app, &client, "openid notes:read").await;
    let ok = api.get("/hello", Some(&token)).await;
    assert_eq!(ok.status().as_u16(), 200);
    let body: Value = ok.json().await.unwrap();
    assert!(body["hello"].is_string());
    let narrow = user_token(&app, &client, "openid notes:write").await;
    let refused = api.get("/hello", Some(&narrow)).await;
    assert_eq!(refused.status().as_u16(), 403);
    let id_token = app.tokens_for(&client, "openid notes:read").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.get("/hello", Some(&id_token)).await.status().as_u16(),
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_api_admins_set_roles_through_the_management_api() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("alice", GOOD_PASSWORD).await;
    let bob = app.create_user("bob", GOOD_PASSWORD).await;
    make_admin(&app, alice.id).await;
    let backend = app
        .admin_client("notes-backend", crate::support::admin::ALL_USERS)
        .await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/notes-api");
    let api = start_notes_api_with(
        &app,
        dir,
        &[
            ("KEYWARD_ADMIN_CLIENT_ID", backend.client.id.as_str()),
            (
                "KEYWARD_ADMIN_CLIENT_SECRET",
                backend.client.secret.as_deref().unwrap(),
            ),
        ],
    )
    .await;
    let client = notes_client(&app).await;
    let token = user_token(&app, &client, "openid notes:read notes:write").await;
    let http = reqwest::Client::new();
    let put = |sub: String, roles: Value| {
        let (http, token, base) = (http.clone(), token.clone(), api.base.clone());
        async move {
            http.put(format!("{base}/admin/users/{sub}/roles"))
                .bearer_auth(token)
                .json(&roles)
                .send()
                .await
                .unwrap()
        }
    };
    let ok = put(
        bob.id.to_string(),
        serde_json::json!({ "roles": ["editor"] }),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["roles"], serde_json::json!(["editor"]));
    assert_eq!(app.user_named("bob").await.unwrap().roles, ["editor"]);
    // Keyward's trail names the backend's management client as the one that changed it.
    let events = crate::support::admin::events_of(&app, "user.roles_set").await;
    assert!(
        events.contains(&"client:notes-backend".to_owned()),
        "{events:?}"
    );
    // Bad roles and unknown people are the API's own 400 and 404.
    let bad = put(
        bob.id.to_string(),
        serde_json::json!({ "roles": ["two words"] }),
    )
    .await;
    assert_eq!(bad.status().as_u16(), 400);
    let nobody = put(
        "00000000-0000-4000-8000-000000000000".into(),
        serde_json::json!({ "roles": [] }),
    )
    .await;
    assert_eq!(nobody.status().as_u16(), 404);
}
