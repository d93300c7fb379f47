//! The processes under test: the real `identity-server` and `identity-mailer`
//! binaries (found next to this one) and the bench's own bare servers, each in
//! its own process so that its memory can be read from `/proc` and so that it
//! competes with the load generator for the cores exactly as it would with any
//! other client on the machine.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::measure::{Memory, memory_of};

/// How long a process may take to start serving before the bench gives up.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a process may take to stop after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A child process, killed when dropped so that no failure path leaks one.
pub struct Process {
    name: String,
    child: std::process::Child,
    pub log: PathBuf,
    spawned_at: Instant,
}

impl Process {
    /// Starts `program` with `env` on top of this environment minus anything
    /// the identity binaries read (so that the caller's shell cannot skew a run,
    /// say by exporting traces);
    /// stdout and stderr go to `log`.
    ///
    /// # Errors
    /// The program cannot be started.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let output = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let errors = output.try_clone().context("sharing the log file")?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(output).stderr(errors);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if ["IDENTITY_", "SENDGRID_", "OTEL_"].iter().any(|prefix| key.starts_with(prefix)) {
                command.env_remove(key.as_ref());
            }
        }
        command.envs(env.iter().map(|(key, value)| (key, value)));
        let spawned_at = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { name: name.to_owned(), child, log, spawned_at })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// # Errors
    /// The process is gone.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory_of(self.pid())
    }

    /// Polls gRPC health on `port` until `service` is SERVING; returns the time
    /// from spawning the process to that answer (its cold start).
    ///
    /// # Errors
    /// The process exited, or did not serve within a minute.
    pub async fn wait_serving(&mut self, port: u16, service: &str) -> anyhow::Result<Duration> {
        let endpoint = format!("http://127.0.0.1:{port}");
        loop {
            if let Some(status) = self.child.try_wait().context("checking the child")? {
                bail!("{} exited with {status} before serving; see {}", self.name, self.log.display());
            }
            if self.spawned_at.elapsed() > START_LIMIT {
                bail!("{} did not serve within {START_LIMIT:?}; see {}", self.name, self.log.display());
            }
            if let Ok(channel) = Channel::from_shared(endpoint.clone())?.connect().await {
                let answer = HealthClient::new(channel).check(HealthCheckRequest { service: service.to_owned() }).await;
                if answer.is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32) {
                    return Ok(self.spawned_at.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits for a process that ends by itself.
    ///
    /// # Errors
    /// It failed, or ran for more than a minute.
    pub async fn wait_exit(&mut self) -> anyhow::Result<()> {
        loop {
            if let Some(status) = self.child.try_wait().context("checking the child")? {
                if status.success() {
                    return Ok(());
                }
                bail!("{} exited with {status}; see {}", self.name, self.log.display());
            }
            if self.spawned_at.elapsed() > START_LIMIT {
                bail!("{} ran for more than {START_LIMIT:?}; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the process to stop (SIGTERM: it drains and closes its database
    /// connections) and waits; kills it if it does not stop in time.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("{} did not stop within {STOP_LIMIT:?}: killing it", self.name);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A binary built next to this one (`target/release/<name>`).
///
/// # Errors
/// It was not built.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating the bench executable")?;
    let path = me.with_file_name(name);
    if !path.is_file() {
        bail!("{} not found next to the bench; build the service first: cargo build --release --bins", path.display());
    }
    // A binary older than the sources it is built from measures old code. The
    // service's sources sit in the package above this one.
    let built = std::fs::metadata(&path).and_then(|metadata| metadata.modified()).ok();
    let sources = newest_modification(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../src"));
    if let (Some(built), Some(sources)) = (built, sources)
        && built < sources
    {
        eprintln!(
            "warning: {} is older than the sources; `cargo build --release --bins` to measure the current code",
            path.display()
        );
    }
    Ok(path)
}

/// The latest modification time of any file under `dir`.
fn newest_modification(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            if metadata.is_dir() { newest_modification(&entry.path()) } else { metadata.modified().ok() }
        })
        .max()
}
