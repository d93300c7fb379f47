//! A service binary run as a child process, with its JSON log read line by line,
//! for tests about what an operator sees in the log.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// Only keeps a broken binary from hanging the suite; no test measures it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

pub struct LoggedProcess {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl LoggedProcess {
    pub fn start(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines, seen: Vec::new() }
    }

    /// Reads the log until a line's message is `message` (start-up markers such as
    /// "identity server listening" are logged once the process got that far).
    pub async fn until_message(&mut self, message: &str) {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let found = message_of(&line).as_deref() == Some(message);
                self.seen.push(line);
                if found {
                    return;
                }
            }
            panic!("the process exited without logging {message:?}:\n{}", self.seen.join("\n"));
        };
        tokio::time::timeout(GIVE_UP_AFTER, read).await.unwrap_or_else(|_| panic!("never logged {message:?}"));
    }

    /// Stops the process with SIGTERM, as Kubernetes would, and returns its whole log.
    pub async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        let rest = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line);
            }
            self.child.wait().await.unwrap()
        };
        tokio::time::timeout(GIVE_UP_AFTER, rest).await.expect("the process stops on SIGTERM");
        self.seen
    }
}

/// The JSON log line's message.
pub fn message_of(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("message")?.as_str().map(ToOwned::to_owned)
}

/// The server binary on `port` against a fresh SQLite file, metrics off, with `env` on top.
pub fn server_command(port: u16, database: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_identity-server"));
    command
        .env("IDENTITY_GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("IDENTITY_DATABASE_URL", format!("sqlite://{}?mode=rwc", database.display()))
        .env("IDENTITY_METRICS_ADDR", "off")
        .env("RUST_LOG", "info");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A SQLite file that is removed when dropped.
pub struct TempDatabase(pub std::path::PathBuf);

impl TempDatabase {
    pub fn new() -> Self {
        Self(std::env::temp_dir().join(format!("identity-process-{}.db", uuid::Uuid::new_v4().simple())))
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}
