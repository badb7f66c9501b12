//! Running the `keyward` binary as an operator would, against a test app's database and clock.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use super::TestApp;

/// Runs `keyward ARGS` with the app's own settings (database, KEK, argon2) and `stdin`, at the
/// app's test clock: what the command writes is dated exactly as the server sees time.
pub fn keyward(app: &TestApp, args: &[&str], stdin: &str) -> Output {
    let now = app.clock().now().unix_timestamp().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["--now", &now])
        .args(args)
        .envs(app.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KEYWARD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyward");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}
