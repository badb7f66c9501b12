//! The server's logs, as an operator collects them: `keyward serve` as a child process in JSON
//! and in text, through a whole flow at `debug`; no secret may appear, every request has its
//! access line and its request id.

use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::oauth::{ClientSpec, Pkce, REDIRECT_URI};
use crate::support::{Browser, GOOD_PASSWORD, TestApp, csrf_of, location};

/// Everything secret the flow handled, and what it logged.
struct Run {
    secrets: Vec<(&'static str, String)>,
    logs: String,
}

/// `keyward serve` on the app's database, at `debug`, in `format`: the child, its address, and
/// its stderr once it ends.
async fn start_server(
    app: &TestApp,
    format: &str,
) -> (
    tokio::process::Child,
    String,
    tokio::task::JoinHandle<String>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("serve")
        .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KEYWARD_BIND", "127.0.0.1:0")
        .env("KEYWARD_METRICS_BIND", "")
        .env("KEYWARD_LOG", "debug")
        .env("KEYWARD_LOG_FORMAT", format)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("keyward serve");
    let mut stderr = child.stderr.take().unwrap();
    let collected = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = stdout.next_line().await.unwrap().expect("the banner");
    let bound = banner
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the address");
    let base = format!("http://{bound}");
    (child, base, collected)
}

/// Signs up on the page, with an address: the password, the CSRF token and the session cookie it
/// handled.
async fn sign_up(b: &Browser, user: &str) -> Vec<(&'static str, String)> {
    let csrf = csrf_of(&b.get("/signup").await.text().await.unwrap());
    let signed_up = b
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("email", &format!("{user}@example.com")),
                ("password", GOOD_PASSWORD),
                ("password_confirm", GOOD_PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed_up.status(), 303);
    vec![
        ("password", GOOD_PASSWORD.to_owned()),
        ("csrf", csrf),
        (
            "session cookie",
            b.cookie("keyward_session").expect("a session"),
        ),
    ]
}

/// The code and link of the mail to `to` about `subject` that the development sink wrote,
/// waiting for it: the server writes mail in the background.
async fn mailed_code(app: &TestApp, to: &str, subject: &str) -> (String, String) {
    let dir = std::path::PathBuf::from(&app.env["KEYWARD_MAIL_DIR"]);
    loop {
        let files = std::fs::read_dir(&dir).into_iter().flatten().flatten();
        for file in files {
            let eml = std::fs::read_to_string(file.path()).unwrap_or_default();
            // Quoted-printable: the code line is short and plain; the link may wrap with "=".
            let unfolded = eml
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            if !unfolded.contains(&format!("Subject: Keyward: {subject}"))
                || !unfolded.contains(&format!("To: {to}"))
            {
                continue;
            }
            let Some(shown) = unfolded.lines().find_map(|l| l.strip_prefix("Your code: ")) else {
                continue;
            };
            let code: String = shown.chars().filter(char::is_ascii_digit).collect();
            let link = unfolded
                .lines()
                .find(|l| l.starts_with("http") && l.contains("code="))
                .unwrap_or_default()
                .trim()
                .to_owned();
            return (code, link);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Confirms `user`'s address with the mailed code: the code and link it handled.
async fn verify_address(app: &TestApp, b: &Browser, user: &str) -> Vec<(&'static str, String)> {
    let to = format!("{user}@example.com");
    let (code, link) = mailed_code(app, &to, "confirm your email address").await;
    let csrf = csrf_of(&b.get("/verify-email").await.text().await.unwrap());
    let verified = b
        .post_form("/verify-email", &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(location(&verified), "/account");
    vec![("verification code", code), ("verification link", link)]
}

/// Resets `user`'s password with the mailed code: the code, link and password it handled.
async fn reset_password(app: &TestApp, base: &str, user: &str) -> Vec<(&'static str, String)> {
    let visitor = Browser::new(base);
    let csrf = csrf_of(&visitor.get("/forgot-password").await.text().await.unwrap());
    visitor
        .post_form("/forgot-password", &[("csrf", &csrf), ("identifier", user)])
        .await;
    let to = format!("{user}@example.com");
    let (code, link) = mailed_code(app, &to, "your password reset code").await;
    let new_password = "another correct horse battery";
    let csrf = csrf_of(&visitor.get("/reset-password").await.text().await.unwrap());
    let reset = visitor
        .post_form(
            "/reset-password",
            &[
                ("csrf", &csrf),
                ("identifier", user),
                ("code", &code),
                ("password", new_password),
                ("password_confirm", new_password),
            ],
        )
        .await;
    assert_eq!(location(&reset), "/signin?reset=1");
    vec![
        ("reset code", code),
        ("reset link", link),
        ("new password", new_password.to_owned()),
    ]
}

/// A backend's management calls: its secret and token, a created user's password, an imported
/// bcrypt hash.
async fn manage_users(app: &TestApp, base: &str, format: &str) -> Vec<(&'static str, String)> {
    let ops = app
        .register_client(
            &format!("ops{format}"),
            ClientSpec {
                scopes: "admin:users.read admin:users.write",
                grants: vec!["client_credentials"],
                ..ClientSpec::default()
            },
        )
        .await;
    let secret = ops.secret.clone().unwrap();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/token"))
        .basic_auth(&ops.id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let password = "the backend chose this passphrase";
    let hash = crate::import::bcryptjs("an imported password", 4);
    let created = http
        .post(format!("{base}/admin/v1/users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "username": format!("made{format}"), "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let batch = serde_json::json!({ "users": [
        { "username": format!("old{format}"), "password_hash": hash },
        { "username": "bad name", "password_hash": hash },
    ]});
    let imported = http
        .post(format!("{base}/admin/v1/users:import"))
        .bearer_auth(&token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    vec![
        ("management client secret", secret),
        ("management token", token),
        ("password set through the API", password.to_owned()),
        ("imported hash", hash),
    ]
}

/// The whole flow against a child server; every secret it handled, and the child's stderr.
async fn run_flow(app: &TestApp, format: &str) -> Run {
    let (mut child, base, collected) = start_server(app, format).await;
    let b = Browser::new(&base);
    let user = format!("grace{format}");
    let mut secrets = sign_up(&b, &user).await;
    // The mailed code proves the address (codes and their links must stay out of the logs).
    secrets.extend(verify_address(app, &b, &user).await);

    // The code flow, a refresh, introspection, userinfo, revocation (codes, tokens, a secret).
    let client = app
        .register_client(
            &format!("web{format}"),
            ClientSpec {
                scopes: "openid profile offline_access",
                grants: vec!["authorization_code", "refresh_token"],
                first_party: true,
                ..ClientSpec::default()
            },
        )
        .await;
    let secret = client.secret.clone().unwrap();
    secrets.push(("client secret", secret.clone()));
    let pkce = Pkce::new();
    secrets.push(("verifier", pkce.verifier.clone()));
    let url = app.authorize_url(&client, &pkce, &[("scope", "openid offline_access")]);
    let callback = b.get(&url).await;
    let to = url::Url::parse(location(&callback)).unwrap();
    let code = to
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    secrets.push(("code", code.clone()));
    let http = reqwest::Client::new();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{secret}", client.id))
    );
    let post = async |path: &str, form: &[(&str, &str)]| -> Value {
        let resp = http
            .post(format!("{base}{path}"))
            .header("authorization", &basic)
            .header("x-request-id", format!("req-{format}"))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["x-request-id"],
            format!("req-{format}").as_str()
        );
        resp.json().await.unwrap_or(Value::Null)
    };
    let tokens = post(
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    for (what, key) in [("access token", "access_token"), ("id token", "id_token")] {
        secrets.push((what, tokens[key].as_str().unwrap().to_owned()));
    }
    let next = post(
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    secrets.push(("refresh token", refresh));
    let access = next["access_token"].as_str().unwrap().to_owned();
    let introspected = post("/introspect", &[("token", &access)]).await;
    assert_eq!(introspected["active"], true);
    let me = http
        .get(format!("{base}/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let second = next["refresh_token"].as_str().unwrap().to_owned();
    post("/revoke", &[("token", &second)]).await;
    secrets.push(("rotated refresh token", second));
    secrets.push(("rotated access token", access));

    // A forgotten password: the reset code, its link and the new password.
    secrets.extend(reset_password(app, &base, &user).await);
    // The management API: its client's secret and token, a password and an imported hash.
    secrets.extend(manage_users(app, &base, format).await);

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    Run {
        secrets,
        logs: collected.await.unwrap(),
    }
}

fn assert_no_secret(run: &Run, format: &str) {
    for (what, secret) in &run.secrets {
        assert!(
            !run.logs.contains(secret.as_str()),
            "{format}: the {what} is in the logs"
        );
    }
    // Nor the raw query of an authorization request, nor a cookie header.
    assert!(
        !run.logs.contains("code_challenge="),
        "{format}: an authorization request's query is in the logs"
    );
    assert!(
        !run.logs.to_ascii_lowercase().contains("cookie:"),
        "{format}"
    );
    assert!(
        !run.logs.contains('\u{1b}'),
        "{format}: no ANSI codes when not on a terminal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_no_secret_and_one_access_line_per_request() {
    let app = TestApp::spawn().await;
    let run = run_flow(&app, "json").await;
    assert_no_secret(&run, "json");
    let lines: Vec<Value> = run
        .logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    let token_lines: Vec<&&Value> = access
        .iter()
        .filter(|l| l["route"] == "/token" && l["client_id"] == "webjson")
        .collect();
    assert_eq!(token_lines.len(), 2, "{access:?}");
    for line in token_lines {
        assert_eq!(line["status"], 200);
        assert_eq!(line["request_id"], "req-json");
        assert!(line["duration_ms"].is_number());
    }
    // The routes are templates; the authorization request's query is nowhere.
    assert!(access.iter().any(|l| l["route"] == "/authorize"));
    assert!(
        access
            .iter()
            .all(|l| !l["route"].as_str().unwrap().contains('?'))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_carry_no_secret_either() {
    let app = TestApp::spawn().await;
    let run = run_flow(&app, "text").await;
    assert_no_secret(&run, "text");
    let token_lines = run
        .logs
        .lines()
        .filter(|l| l.contains(r#"route="/token""#) && l.contains(r#"client_id="webtext""#))
        .collect::<Vec<_>>();
    assert_eq!(token_lines.len(), 2, "{}", run.logs);
    for line in token_lines {
        assert!(line.contains(r#"request_id="req-text""#), "{line}");
        assert!(line.contains("status=200"), "{line}");
    }
}
