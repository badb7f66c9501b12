//! CORS for browser apps: public documents to anyone, token endpoints per client, never the
//! authorization endpoint, the pages or introspection, never with credentials.

use reqwest::{Method, Response};

use crate::support::TestApp;
use crate::support::oauth::{ClientSpec, TestClient};

const APP: &str = "https://app.example.com";
const ADMIN: &str = "https://admin.example.com";
const EVIL: &str = "https://evil.example";

fn acao(resp: &Response) -> Option<&str> {
    resp.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

fn assert_no_credentials(resp: &Response) {
    assert!(
        !resp
            .headers()
            .contains_key("access-control-allow-credentials"),
        "{resp:?}"
    );
}

async fn send(app: &TestApp, method: Method, path: &str, origin: &str) -> Response {
    app.browser
        .client
        .request(method, format!("{}{path}", app.base))
        .header("origin", origin)
        .send()
        .await
        .unwrap()
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> Response {
    app.browser
        .client
        .request(Method::OPTIONS, format!("{}{path}", app.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

/// The SPA (a public client on `APP`, its redirect URI's origin) and a
/// confidential client with an explicit extra origin.
async fn clients(app: &TestApp) -> (TestClient, TestClient) {
    let spa = app
        .register_client(
            "spa",
            ClientSpec {
                public: true,
                grants: vec!["authorization_code", "refresh_token"],
                ..ClientSpec::default()
            },
        )
        .await;
    let admin = app
        .register_client(
            "admin",
            ClientSpec {
                grants: vec!["client_credentials"],
                redirect_uri: Some("https://backoffice.example.com/cb".to_owned()),
                origins: vec![ADMIN],
                ..ClientSpec::default()
            },
        )
        .await;
    (spa, admin)
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_the_jwks_are_readable_from_any_origin() {
    let app = TestApp::spawn().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/jwks.json",
    ] {
        let resp = send(&app, Method::GET, path, EVIL).await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(acao(&resp), Some("*"), "{path}");
        assert_no_credentials(&resp);
        let pre = preflight(&app, path, EVIL).await;
        assert_eq!(pre.status().as_u16(), 204, "{path}");
        assert_eq!(acao(&pre), Some("*"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoints_answer_preflights_only_for_origins_some_client_allows() {
    let app = TestApp::spawn().await;
    clients(&app).await;
    for path in ["/token", "/revoke"] {
        for origin in [APP, ADMIN] {
            let resp = preflight(&app, path, origin).await;
            assert_eq!(resp.status().as_u16(), 204, "{path} {origin}");
            assert_eq!(acao(&resp), Some(origin));
            let h = resp.headers();
            assert_eq!(h["access-control-allow-methods"], "POST");
            assert_eq!(
                h["access-control-allow-headers"],
                "Authorization, Content-Type"
            );
            assert!(h.contains_key("access-control-max-age"));
            assert!(h["vary"].to_str().unwrap().contains("Origin"));
            assert_no_credentials(&resp);
        }
        let refused = preflight(&app, path, EVIL).await;
        assert_eq!(acao(&refused), None, "{path}");
        assert_ne!(refused.status().as_u16(), 204);
    }
    let userinfo = preflight(&app, "/userinfo", APP).await;
    assert_eq!(acao(&userinfo), Some(APP));
    assert_eq!(
        userinfo.headers()["access-control-allow-methods"],
        "GET, POST"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_response_is_readable_only_by_the_origins_of_the_client_named() {
    let app = TestApp::spawn().await;
    let (spa, admin) = clients(&app).await;
    let token = |client: &TestClient, origin: &'static str| {
        let mut req = app
            .browser
            .client
            .post(format!("{}/token", app.base))
            .header("origin", origin);
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        match &client.secret {
            Some(s) => req = req.basic_auth(&client.id, Some(s)),
            None => form.push(("client_id", client.id.clone())),
        }
        req.form(&form).send()
    };
    let ok = token(&admin, ADMIN).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(acao(&ok), Some(ADMIN));
    assert!(ok.headers()["vary"].to_str().unwrap().contains("Origin"));
    assert_no_credentials(&ok);
    // The SPA's origin is allowed for the SPA, not for the admin client.
    let other = token(&admin, APP).await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    assert_eq!(acao(&other), None);
    // The SPA's own (refused) request is readable by the SPA, so it can show the error.
    let refused = token(&spa, APP).await.unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    assert_eq!(acao(&refused), Some(APP));
    // An unknown client on an unknown origin: nothing to read.
    let unknown = TestClient {
        id: "nobody".to_owned(),
        secret: None,
    };
    assert_eq!(acao(&token(&unknown, EVIL).await.unwrap()), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_is_readable_by_the_origins_of_the_tokens_client() {
    let app = TestApp::spawn().await;
    app.create_user("alice", crate::support::GOOD_PASSWORD)
        .await;
    let web = app.register_client("web", ClientSpec::default()).await;
    clients(&app).await;
    let tokens = app.tokens_for(&web, "openid").await;
    let access = tokens["access_token"].as_str().unwrap();
    let get = |origin: &'static str, token: &str| {
        app.browser
            .client
            .get(format!("{}/userinfo", app.base))
            .header("origin", origin)
            .bearer_auth(token)
            .send()
    };
    // "web" redirects to `APP`/callback: that origin reads its userinfo.
    let ok = get(APP, access).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(acao(&ok), Some(APP));
    let admin = get(ADMIN, access).await.unwrap();
    assert_eq!(admin.status().as_u16(), 200);
    assert_eq!(acao(&admin), None, "another client's origin");
    // An expired or bad token: the 401 (and why) is readable, so the app knows to refresh.
    let bad = get(APP, "not-a-token").await.unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    assert_eq!(acao(&bad), Some(APP));
    assert!(
        bad.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("WWW-Authenticate")
    );
    assert_eq!(acao(&get(EVIL, "not-a-token").await.unwrap()), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_endpoint_pages_and_introspection_never_answer_cors() {
    let app = TestApp::spawn().await;
    let (_, admin) = clients(&app).await;
    let authorize = app.authorize_url(
        &TestClient {
            id: "spa".to_owned(),
            secret: None,
        },
        &crate::support::oauth::Pkce::new(),
        &[],
    );
    for path in [
        authorize.as_str(),
        "/signin",
        "/signup",
        "/account",
        "/consent?request=x",
    ] {
        let resp = send(&app, Method::GET, path, APP).await;
        assert_eq!(acao(&resp), None, "{path}");
        let pre = preflight(&app, path.split('?').next().unwrap(), APP).await;
        assert_eq!(acao(&pre), None, "{path}");
    }
    let introspect = app
        .browser
        .client
        .post(format!("{}/introspect", app.base))
        .header("origin", ADMIN)
        .basic_auth(&admin.id, admin.secret.as_deref())
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(introspect.status().as_u16(), 200);
    assert_eq!(acao(&introspect), None);
    assert_eq!(acao(&preflight(&app, "/introspect", ADMIN).await), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn origins_follow_clients_update_and_only_what_it_names_changes() {
    use crate::support::cli::{keyward, stderr, stdout};
    let app = TestApp::spawn().await;
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_str(&stdout(out)).unwrap()
    };
    let created = keyward(
        &app,
        &[
            "clients",
            "create",
            "--name",
            "Spa",
            "--id",
            "spa",
            "--public",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--json",
        ],
        "",
    );
    json(&created);
    assert_eq!(acao(&preflight(&app, "/token", ADMIN).await), None);

    // An origin added: allowed at once (no cache to wait for); the rest of the client unchanged.
    let updated = json(&keyward(
        &app,
        &[
            "clients",
            "update",
            "spa",
            "--allowed-origin",
            ADMIN,
            "--name",
            "Spa 2",
            "--json",
        ],
        "",
    ));
    assert_eq!(updated["name"], "Spa 2");
    assert_eq!(
        updated["redirect_uris"],
        serde_json::json!(["https://app.example.com/cb"])
    );
    assert_eq!(
        updated["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(updated["allowed_origins"], serde_json::json!([APP, ADMIN]));
    assert_eq!(acao(&preflight(&app, "/token", ADMIN).await), Some(ADMIN));

    // New redirect URIs keep the explicit origin; clearing it leaves only the redirect's.
    let moved = json(&keyward(
        &app,
        &[
            "clients",
            "update",
            "spa",
            "--redirect-uri",
            "https://new.example.com/cb",
            "--json",
        ],
        "",
    ));
    assert_eq!(
        moved["allowed_origins"],
        serde_json::json!(["https://new.example.com", ADMIN])
    );
    assert_eq!(
        acao(&preflight(&app, "/token", APP).await),
        None,
        "the old redirect's origin"
    );
    let cleared = json(&keyward(
        &app,
        &[
            "clients",
            "update",
            "spa",
            "--clear-allowed-origins",
            "--json",
        ],
        "",
    ));
    assert_eq!(
        cleared["allowed_origins"],
        serde_json::json!(["https://new.example.com"])
    );
    assert_eq!(acao(&preflight(&app, "/token", ADMIN).await), None);
}
