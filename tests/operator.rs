//! The operator's first hour, as issue reports found it: the tools around Keyward (`.ci/pg`)
//! run as an operator runs them, in shells of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::free_port;

/// A copy of `.ci/pg` in a checkout of its own (so its own cluster), reset when dropped.
struct OwnCluster {
    root: PathBuf,
}

impl OwnCluster {
    fn new() -> Self {
        let root = std::env::temp_dir().join(format!("keyward-pg-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join(".ci")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pg");
        std::fs::copy(script, root.join(".ci/pg")).unwrap();
        Self { root }
    }

    /// `.ci/pg COMMAND` in a fresh shell: no `DATABASE_URL`, and `KEYWARD_PG_PORT` only if given.
    fn run(&self, command: &str, port: Option<u16>) -> Output {
        let mut cmd = Command::new(self.root.join(".ci/pg"));
        cmd.arg(command)
            .env_remove("DATABASE_URL")
            .env_remove("KEYWARD_PG_PORT")
            .env_remove("KEYWARD_PG_DURABLE");
        if let Some(port) = port {
            cmd.env("KEYWARD_PG_PORT", port.to_string());
        }
        cmd.output().expect(".ci/pg runs")
    }

    /// The URL `.ci/pg url` prints, asserting it succeeded.
    fn url(&self, port: Option<u16>) -> String {
        let out = self.run("url", port);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.run("reset", None);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn make_db_in_a_second_shell_finds_the_port_the_first_was_given() {
    let cluster = OwnCluster::new();
    let port = free_port();
    // `KEYWARD_PG_PORT=... make run` in one shell...
    let first = cluster.url(Some(port));
    assert!(first.contains(&format!("@127.0.0.1:{port}/")), "{first}");
    // ...`export DATABASE_URL=$(make -s db)` in another, without the variable.
    assert_eq!(cluster.url(None), first);
    // Another port while it runs: the URL still names the one it listens on, and says why.
    let out = cluster.run("url", Some(free_port()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), first);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already listens"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stopped and started again without the variable: the same port.
    assert!(cluster.run("stop", None).status.success());
    assert_eq!(cluster.url(None), first);
}

#[test]
fn make_demo_names_the_process_holding_a_port_it_needs_and_starts_nothing() {
    // Whatever holds 4000 (this test, or anything else already there), the demo must not start.
    let held = std::net::TcpListener::bind("127.0.0.1:4000");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.sh");
    let out = Command::new(demo)
        .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/x")
        .output()
        .expect("the demo script runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("demo: port 4000 is in use"), "{err}");
    // With iproute2's ss (Debian has it), the holder is named: here, this test's own process.
    if held.is_ok() && Path::new("/usr/bin/ss").exists() {
        let me = format!("(pid {})", std::process::id());
        assert!(err.contains(&me), "{err}");
    }
    assert!(err.contains("make run"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "no URL printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
