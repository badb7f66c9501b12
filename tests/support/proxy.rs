//! A TCP forwarder in front of PostgreSQL that a test can cut and restore, to play an outage.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the forwarder shares with its connections.
struct Switch {
    up: AtomicBool,
    cut: watch::Sender<u64>,
    /// When set, the outage starts the moment a client sends these bytes (a query's text).
    trip: Mutex<Option<Vec<u8>>>,
}

impl Switch {
    fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Whether `seen` (the last bytes a client sent) trips the armed outage.
    fn trips(&self, seen: &[u8]) -> bool {
        let trip = self.trip.lock().unwrap();
        trip.as_ref()
            .is_some_and(|t| seen.windows(t.len()).any(|w| w == t.as_slice()))
    }
}

/// Forwards client to server until the connection ends or the switch trips; the query that
/// trips it never reaches the server.
async fn forward_client(
    mut client: tokio::net::tcp::OwnedReadHalf,
    mut server: tokio::net::tcp::OwnedWriteHalf,
    switch: Arc<Switch>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Keep the end of the previous read, so a pattern split across reads is still seen.
        tail.extend_from_slice(&buf[..n]);
        if switch.trips(&tail) {
            *switch.trip.lock().unwrap() = None;
            switch.go_down();
            return;
        }
        if server.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let keep = tail.len().saturating_sub(256);
        tail.drain(..keep);
    }
}

/// The forwarder; dropping it stops it.
pub struct DbProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    switch: Arc<Switch>,
    task: tokio::task::JoinHandle<()>,
}

impl DbProxy {
    /// Starts forwarding 127.0.0.1:random to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, cut_rx) = watch::channel(0u64);
        let switch = Arc::new(Switch {
            up: AtomicBool::new(true),
            cut,
            trip: Mutex::new(None),
        });
        let task_switch = Arc::clone(&switch);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !task_switch.up.load(Ordering::SeqCst) {
                    drop(client); // refused: the "database" is down
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                // Only cuts after this connection opened concern it.
                cut_rx.borrow_and_update();
                let switch = Arc::clone(&task_switch);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, mut client_write) = client.into_split();
                    let (mut server_read, server_write) = server.into_split();
                    tokio::select! {
                        () = forward_client(client_read, server_write, switch) => {}
                        _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { addr, switch, task }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn go_down(&self) {
        self.switch.go_down();
    }

    /// Goes down the moment a client sends a query containing `text`, before the server sees
    /// it: an outage at an exact step of a request, whatever the machine's speed. Connections
    /// cache prepared statements, so only a statement's first use on a connection carries its
    /// text: pick one the test has not run before.
    pub fn go_down_at_query(&self, text: &str) {
        *self.switch.trip.lock().unwrap() = Some(text.as_bytes().to_vec());
    }

    /// Accepts connections again.
    pub fn come_back(&self) {
        self.switch.up.store(true, Ordering::SeqCst);
    }
}

impl crate::support::TestApp {
    /// Starts the app reaching PostgreSQL through a [`DbProxy`] the test can cut.
    pub async fn spawn_behind_proxy(settings: &[(&'static str, &str)]) -> (Self, DbProxy) {
        let url = crate::support::db::base_url();
        let pg =
            tokio::net::lookup_host((url.host_str().expect("host"), url.port().unwrap_or(5432)))
                .await
                .expect("resolve PostgreSQL")
                .next()
                .expect("an address");
        let proxy = DbProxy::start(pg).await;
        let port = proxy.addr.port();
        let app = Self::spawn_through(
            |db| {
                let mut u = crate::support::db::base_url();
                u.set_host(Some("127.0.0.1")).expect("host");
                u.set_port(Some(port)).expect("port");
                u.set_path(&format!("/{db}"));
                u.to_string()
            },
            settings,
        )
        .await;
        (app, proxy)
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
