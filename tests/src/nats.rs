//! NATS for the relay's tests: the server the tests use (`NATS_URL`), a stream of this run's own,
//! deleted when done, and a `nats-server -js` of a test's own (a free port, its own store
//! directory) that the test may stop and start again.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// The events tables the tests' relays publish: the tasks' and the projects', those the writers of
/// the gap and kill tests append to.
pub const RELAYED_TABLES: &[&str] = &["task_events", "project_events"];

/// The URL of the NATS server (with JetStream) for the tests, if any: `NATS_URL`.
pub fn nats_url() -> Option<String> {
    std::env::var("NATS_URL").ok().filter(|url| !url.is_empty())
}

/// A JetStream stream of this run for one test (its name from [`isolated_name`]), deleted when
/// dropped unless the test failed.
///
/// [`isolated_name`]: crate::backend::isolated_name
pub struct TestStream {
    url: String,
    name: String,
    runtime: tokio::runtime::Runtime,
    jetstream: jetstream::Context,
}

impl TestStream {
    /// A stream name of this run for `test` on server `url` (nothing is created yet: the relay
    /// creates it).
    pub fn new(url: &str, test: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let jetstream = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(url)
                .await
                .expect("connect to NATS");
            jetstream::new(client)
        });
        Self {
            url: url.to_owned(),
            name: crate::backend::isolated_name(test).to_uppercase(),
            runtime,
            jetstream,
        }
    }

    /// The stream's name, also its subjects' prefix (in lowercase).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many messages the stream holds (0 before it exists). A request that fails otherwise
    /// (a timeout on a loaded machine, a reconnection) is tried again for up to half a minute.
    pub fn messages(&self) -> u64 {
        use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let asked = self.runtime.block_on(async {
                let mut stream = match self.jetstream.get_stream(&self.name).await {
                    Err(error)
                        if matches!(error.kind(), GetStreamErrorKind::JetStream(ref error)
                            if error.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
                    {
                        return Ok(0);
                    }
                    stream => stream?,
                };
                let info = stream.info().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(info.state.messages)
            });
            match asked {
                Ok(messages) => return messages,
                Err(error) if Instant::now() > deadline => {
                    panic!("the stream {}'s info: {error}", self.name)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the test stream `{}`", self.name);
            return;
        }
        let _ = self
            .runtime
            .block_on(self.jetstream.delete_stream(&self.name));
    }
}

/// A `nats-server -js` of a test's own, on a free port with its own store directory, killed
/// when dropped.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    process: Option<Child>,
}

impl NatsServer {
    /// The server binary: `NATS_SERVER` or `/usr/sbin/nats-server`, if it exists.
    pub fn binary() -> Option<PathBuf> {
        let path = std::env::var_os("NATS_SERVER")
            .map_or_else(|| PathBuf::from("/usr/sbin/nats-server"), PathBuf::from);
        path.exists().then_some(path)
    }

    /// Starts a server, and waits until it accepts connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            store: tempfile::tempdir().expect("a store directory"),
            process: None,
        };
        server.restart();
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: nothing flushed on the way out).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts it again on the same port and store (killing it first if it runs), and waits until
    /// it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let binary = Self::binary().expect("nats-server is installed");
        let process = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
