//! `src/http/openapi.yaml` against the running server: schemathesis (from `PyPI`, installed by
//! `make test` into `.venv`) generates requests from the description and checks that no answer
//! is a 500 and every answer matches what the description says (status, content type, schema).

use std::path::Path;

use crate::support::TestApp;
use crate::support::oauth::ClientSpec;

#[tokio::test(flavor = "multi_thread")]
async fn the_json_endpoints_answer_as_their_openapi_description_says() {
    // Limits off: the fuzzer is one address guessing all day, and we want its requests judged.
    let app = TestApp::spawn_with(&[
        ("KEYWARD_LIMIT_TOKEN_PER_IP", "off"),
        ("KEYWARD_LIMIT_TOKEN_PER_CLIENT", "off"),
        ("KEYWARD_LIMIT_ADMIN_PER_CLIENT", "off"),
    ])
    .await;
    let spec = ClientSpec {
        grants: vec!["authorization_code", "refresh_token", "client_credentials"],
        scopes: "openid profile offline_access",
        ..ClientSpec::default()
    };
    let client = app.register_client("fuzz", spec).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemathesis = root.join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: `make test` installs it (make test-deps)",
        schemathesis.display()
    );
    // The management API is fuzzed with a real management token (the clock stands still, so it
    // stays live), the token endpoints with the client's own credentials: each security scheme of
    // the description gets its credential.
    let admin = app
        .admin_client(
            "fuzz-admin",
            "admin:users.read admin:users.write admin:audit.read",
        )
        .await;
    let config = std::env::temp_dir().join(format!(
        "keyward-schemathesis-{}.toml",
        uuid::Uuid::new_v4()
    ));
    let toml = format!(
        "[auth.openapi.basic]\nusername = \"{}\"\npassword = \"{}\"\n\n[auth.openapi.adminBearer]\nbearer = \"{}\"\n",
        client.id,
        client.secret.unwrap(),
        admin.token
    );
    std::fs::write(&config, toml).unwrap();
    let out = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(root.join("src/http/openapi.yaml"))
        .args(["--url", &app.base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "40", "--seed", "7", "--workers", "1"])
        .args(["--request-timeout", "120"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("schemathesis runs");
    let _ = std::fs::remove_file(&config);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found mismatches:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Tested: 27"),
        "every operation was exercised:\n{report}"
    );
}
