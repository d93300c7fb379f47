//! Runs the chosen scenarios: a fresh server per scenario (so that its peak
//! memory is that scenario's), the load, and one report per scenario plus a
//! summary table.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, bail};
use identity::infrastructure::Argon2Settings;
use secrecy::ExposeSecret;

use testkit::free_port;

use crate::{
    callers::{
        Client, EmailSeries, GetCurrentUserCaller, LoginCaller, MixedCaller, RefreshCaller, SignUpCaller,
        ValidateTokenCaller, bearer_values, log_in,
    },
    database::BenchDatabase,
    load::{self, Caller, Outcome, Plan},
    measure::{CpuSnapshot, Memory, mib, ms, percent, percentile},
    options::{Backend, Options, Scenario},
    pool_rss,
    processes::{Process, sibling},
};

mod ceiling_runs;
mod email_run;
mod enumeration;
mod import;
mod rate_limits;
mod storm;
mod tokens;

/// Users the login scenarios spread their calls over.
const LOGIN_USERS: usize = 64;
/// Logins whose access tokens the token scenarios present (as re-signed copies
/// for validate-token).
const TOKENS: usize = 16;
/// Distinct tokens the bare verifying server is loaded with.
const DISTINCT_TOKENS: usize = 20_000;
/// Concurrency of the sign-ups that create users for other scenarios.
const SEED_CONCURRENCY: usize = 16;
/// Rounds of sign-ups the set-up tries before a shed sign-up fails the scenario.
const SEED_ROUNDS: usize = 3;
/// How long each ceiling is measured in the ceilings section.
const CEILING_SAMPLE: Duration = Duration::from_secs(4);
/// How long a scenario's ceiling is measured right before the scenario: on a
/// shared machine the load from other jobs drifts, and a ratio is only
/// meaningful between figures taken under the same conditions.
const QUICK_SAMPLE: Duration = Duration::from_secs(2);
/// Settling time between a server reporting SERVING and its idle RSS being read.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ceiling {
    Argon2,
    Echo,
    Verify,
}

impl Ceiling {
    fn for_scenario(scenario: Scenario) -> Option<Self> {
        match scenario {
            Scenario::Login | Scenario::LoginBurst => Some(Self::Argon2),
            Scenario::ValidateToken | Scenario::GetCurrentUser => Some(Self::Verify),
            Scenario::SignUp
            | Scenario::Refresh
            | Scenario::Mixed
            | Scenario::SignUpFramework
            | Scenario::LoginFramework => Some(Self::Echo),
            Scenario::SignUpToEmail
            | Scenario::LoginEnumeration
            | Scenario::LoginStorm
            | Scenario::ImportDjango
            | Scenario::RateLimitCheck => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Argon2 => "raw argon2",
            Self::Echo => "bare echo server",
            Self::Verify => "bare verifying server",
        }
    }
}

/// A ceiling's throughput, and the line describing the measurement.
struct Measured {
    value: f64,
    /// CPU the ceiling's own process spent per call (none for raw argon2).
    cpu_per_call: Option<Duration>,
    line: String,
}

/// Linux reports process CPU time in clock ticks of 1/100 s (`USER_HZ`, fixed
/// at 100 for user space whatever the kernel's own tick rate).
const TICK: Duration = Duration::from_millis(10);

/// CPU `pid` used between the two snapshots, per successful call.
fn cpu_per_call(before: Option<&CpuSnapshot>, pid: Option<u32>, calls: u64) -> Option<Duration> {
    let (before, pid) = (before?, pid?);
    let after = CpuSnapshot::take(&[("process", pid)])?;
    let ticks = after.ticks_of(pid)?.checked_sub(before.ticks_of(pid)?)?;
    (calls > 0).then(|| TICK * u32::try_from(ticks).unwrap_or(u32::MAX) / u32::try_from(calls).unwrap_or(u32::MAX))
}

/// "; cpu: …" since `before`, or nothing where /proc is missing.
fn cpu_line(before: Option<CpuSnapshot>, processes: &[(&'static str, u32)]) -> String {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    match (before, CpuSnapshot::take(processes)) {
        (Some(before), Some(after)) => format!("; cpu: {}", before.usage_since(&after, cores)),
        _ => String::new(),
    }
}

/// A server under test: started by the bench, or the one `--target` names.
struct Server {
    process: Option<Process>,
    url: String,
    cold_start: Option<Duration>,
    idle: Option<Memory>,
}

/// Start-up time and memory of a server the bench started.
#[derive(Debug, Clone, Copy)]
struct ServerFigures {
    cold_start: Duration,
    idle: Memory,
    end: Memory,
}

impl ServerFigures {
    fn line(&self, name: &str) -> String {
        format!(
            "{name}: SERVING {} after start; RSS idle {}, after the run {}, peak (VmHWM) {}",
            ms(self.cold_start),
            mib(self.idle.rss_kib),
            mib(self.end.rss_kib),
            mib(self.end.peak_kib)
        )
    }
}

impl Server {
    fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    async fn client(&self, concurrency: usize) -> anyhow::Result<(Vec<tonic::transport::Channel>, Client)> {
        let channels = load::connect(&self.url, concurrency).await?;
        let client = Client::new(channels[0].clone());
        Ok((channels, client))
    }

    /// Reads the memory at the end of the run and stops the process.
    async fn finish(self) -> Option<ServerFigures> {
        let process = self.process?;
        let end = process.memory().ok();
        process.stop().await;
        Some(ServerFigures { cold_start: self.cold_start?, idle: self.idle?, end: end? })
    }
}

/// The users a backend's scenarios log in as: one set per hashing cost, since
/// a login verifies with the parameters its user's hash was made with.
#[derive(Default)]
struct UserSets {
    production: Users,
    framework: Users,
}

impl UserSets {
    fn for_scenario(&mut self, scenario: Scenario) -> &mut Users {
        if scenario.is_framework() { &mut self.framework } else { &mut self.production }
    }
}

#[derive(Default)]
struct Users {
    verified: Vec<String>,
    /// Signed up, not yet marked verified.
    pending: Vec<String>,
}

/// What one scenario measured, for its report.
struct Report<'a> {
    scenario: Scenario,
    backend: Backend,
    concurrency: usize,
    outcome: &'a Outcome,
    ceilings: &'a [(Ceiling, Measured)],
    cpu: String,
    /// The server's CPU per successful call.
    server_cpu_per_call: Option<Duration>,
    server: Option<ServerFigures>,
}

/// One line of the summary table.
struct Row {
    scenario: &'static str,
    backend: &'static str,
    throughput: String,
    versus: String,
    p50: String,
    p99: String,
    errors: String,
    /// Server CPU per call, and the ceiling's where it has one.
    cpu_per_call: String,
    server: Option<ServerFigures>,
}

pub struct Bench {
    options: Options,
    run_id: String,
    dir: PathBuf,
    argon2: Argon2Settings,
    /// argon2 at its minimum cost, for the framework scenarios.
    argon2_minimum: Argon2Settings,
    /// The servers' signing key, so that tokens survive between scenarios' servers.
    token_secret: String,
    /// `identity-server` and `identity-mailer`, found once next to the bench.
    binaries: Option<(PathBuf, PathBuf)>,
    batches: usize,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Bench {
    /// # Errors
    /// The log directory cannot be created.
    pub fn new(options: Options) -> anyhow::Result<Self> {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dir = std::env::temp_dir().join(format!("identity-bench-{run_id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (secret, _) = identity::infrastructure::PasetoTokens::generate_secret_key()?;
        Ok(Self {
            options,
            run_id,
            dir,
            argon2: Argon2Settings::recommended(),
            argon2_minimum: Argon2Settings { m_cost: 8, t_cost: 1, p_cost: 1, ..Argon2Settings::recommended() },
            token_secret: secret.expose_secret().to_owned(),
            binaries: None,
            batches: 0,
            rows: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// # Errors
    /// Only failures that make the whole run meaningless; a failing scenario
    /// is reported and the run goes on.
    pub async fn run(mut self) -> anyhow::Result<()> {
        println!(
            "identity-bench: {} cores, argon2 m={} t={} p={} with {} workers; logs in {}\n",
            std::thread::available_parallelism().map_or(0, usize::from),
            self.argon2.m_cost,
            self.argon2.t_cost,
            self.argon2.p_cost,
            self.argon2.max_concurrent,
            self.dir.display()
        );
        for (name, value) in &self.options.server_env {
            println!("  every server started with {name}={value}");
        }
        if !self.options.scenarios.is_empty() && self.options.target.is_none() {
            self.binaries = Some((sibling("identity-server")?, sibling("identity-mailer")?));
        }
        if self.options.with_pool_rss {
            pool_rss::report(&self.dir).await?;
        }
        self.measure_ceilings().await?;
        for backend in self.options.backends.clone() {
            if self.options.scenarios.is_empty() {
                break;
            }
            let database = match (&self.options.target, &self.options.target_database_url) {
                (Some(_), Some(url)) => Some(BenchDatabase::External(url.clone())),
                (Some(_), None) => None,
                (None, _) => Some(BenchDatabase::create(backend, &self.run_id, &self.options.postgres_url).await?),
            };
            let mut users = UserSets::default();
            for scenario in self.options.scenarios.clone() {
                let users = users.for_scenario(scenario);
                if let Err(error) = self.run_scenario(scenario, backend, database.as_ref(), users).await {
                    println!("== {} · {} ==\n  FAILED: {error:#}\n", scenario.name(), self.backend_name(backend));
                }
            }
            // Dropping it removes the run's own database.
            drop(database);
        }
        self.print_summary();
        Ok(())
    }

    fn backend_name(&self, backend: Backend) -> &'static str {
        if self.options.target.is_some() { "target" } else { backend.name() }
    }

    fn next_series(&mut self) -> EmailSeries {
        self.batches += 1;
        EmailSeries::new(&self.run_id, self.batches)
    }

    /// Starts identity-server on `database` (or takes `--target`), waits for SERVING.
    async fn start_server(
        &self,
        database: Option<&BenchDatabase>,
        label: &str,
        amqp: Option<&identity::infrastructure::rabbitmq::MailerTopology>,
    ) -> anyhow::Result<Server> {
        self.start_server_with(database, label, amqp, self.argon2).await
    }

    /// [`Self::start_server`] with the hashing cost given.
    async fn start_server_with(
        &self,
        database: Option<&BenchDatabase>,
        label: &str,
        amqp: Option<&identity::infrastructure::rabbitmq::MailerTopology>,
        argon2: Argon2Settings,
    ) -> anyhow::Result<Server> {
        self.start_server_env(database, label, amqp, argon2, &[]).await
    }

    /// [`Self::start_server_with`], with `extra` variables set last (they win).
    async fn start_server_env(
        &self,
        database: Option<&BenchDatabase>,
        label: &str,
        amqp: Option<&identity::infrastructure::rabbitmq::MailerTopology>,
        argon2: Argon2Settings,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        if let Some(target) = &self.options.target {
            return Ok(Server { process: None, url: target.clone(), cold_start: None, idle: None });
        }
        let database = database.context("no database for the server")?;
        let port = free_port().context("finding a free port")?;
        let mut env: Vec<(String, String)> = [
            ("IDENTITY_GRPC_ADDR", format!("127.0.0.1:{port}")),
            ("IDENTITY_DATABASE_URL", database.url()),
            ("IDENTITY_TOKEN_SECRET_KEY", self.token_secret.clone()),
            ("IDENTITY_ARGON2_M_COST", argon2.m_cost.to_string()),
            ("IDENTITY_ARGON2_T_COST", argon2.t_cost.to_string()),
            ("IDENTITY_ARGON2_P_COST", argon2.p_cost.to_string()),
            ("IDENTITY_ARGON2_MAX_CONCURRENT", argon2.max_concurrent.to_string()),
            // Load tests call from one address and reuse emails on purpose.
            ("IDENTITY_RATE_LIMIT_PER_ADDRESS", "0".to_owned()),
            ("IDENTITY_RATE_LIMIT_PER_EMAIL", "0".to_owned()),
            ("IDENTITY_RATE_LIMIT_REFRESH_PER_ADDRESS", "0".to_owned()),
            ("IDENTITY_LOGIN_THROTTLE_AFTER", "1000000".to_owned()),
            // The production default, said out loud: `refresh` is reported with
            // the reuse grace on (each caller rotates its own chain, so no call
            // is a retry; the grace costs nothing on that path).
            ("IDENTITY_REFRESH_REUSE_GRACE", "10s".to_owned()),
            ("IDENTITY_LOG_FORMAT", "json".to_owned()),
            // Metrics stay on, as in production, on a port of their own.
            ("IDENTITY_METRICS_ADDR", format!("127.0.0.1:{}", free_port().context("finding a free port")?)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        if let Some(topology) = amqp {
            env.push(("IDENTITY_AMQP_URL".to_owned(), self.options.amqp_url.clone()));
            env.push(("IDENTITY_AMQP_EXCHANGE".to_owned(), topology.exchange.clone()));
        }
        // The scenario's settings over the defaults, and what the operator
        // asked for (`--server-env`) over both.
        let overrides = extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .chain(self.options.server_env.iter().cloned());
        for (key, value) in overrides {
            env.retain(|(name, _)| *name != key);
            env.push((key, value));
        }
        let log = self.dir.join(format!("server-{label}.log"));
        let (server, _) = self.binaries.as_ref().context("identity-server was not found")?;
        let mut process = Process::spawn("identity-server", server, &["serve"], &env, log)?;
        let cold_start = process.wait_serving(port, "").await?;
        tokio::time::sleep(SETTLE).await;
        let idle = process.memory()?;
        Ok(Server {
            process: Some(process),
            url: format!("http://127.0.0.1:{port}"),
            cold_start: Some(cold_start),
            idle: Some(idle),
        })
    }

    /// At least `count` verified users, signing up and verifying more if needed.
    async fn verified_users(
        &mut self,
        client: &Client,
        database: Option<&BenchDatabase>,
        users: &mut Users,
        count: usize,
    ) -> anyhow::Result<Arc<Vec<String>>> {
        // A loaded machine may shed some sign-ups (RESOURCE_EXHAUSTED after the
        // hashing queue's timeout): sign up the missing ones again, a few times.
        for round in 1..=SEED_ROUNDS {
            let missing = count.saturating_sub(users.verified.len() + users.pending.len());
            if missing == 0 {
                break;
            }
            let created = Arc::new(Mutex::new(Vec::new()));
            let series = self.next_series();
            let plan = Plan { concurrency: SEED_CONCURRENCY, requests: missing, time_limit: Duration::from_secs(300) };
            let outcome = load::closed_loop(plan, |_| {
                Box::new(SignUpCaller { client: client.clone(), series: series.clone(), created: Arc::clone(&created) })
            })
            .await;
            users.pending.extend(std::mem::take(&mut *created.lock().unwrap_or_else(PoisonError::into_inner)));
            let only_shed = outcome.errors.keys().all(|code| code == "ResourceExhausted");
            if !outcome.errors.is_empty() && (!only_shed || round == SEED_ROUNDS) {
                bail!("signing up the bench's users failed: {}", outcome.errors_line());
            }
        }
        if !users.pending.is_empty() {
            let Some(database) = database else {
                bail!("logging in needs verified users: with --target, pass the server's --database-url")
            };
            database.verify_all_users().await?;
            users.verified.append(&mut users.pending);
        }
        Ok(Arc::new(users.verified.clone()))
    }

    async fn run_scenario(
        &mut self,
        scenario: Scenario,
        backend: Backend,
        database: Option<&BenchDatabase>,
        users: &mut Users,
    ) -> anyhow::Result<()> {
        match scenario {
            Scenario::SignUpToEmail => return self.signup_to_email(backend, database).await,
            Scenario::LoginEnumeration => return self.login_enumeration(backend, database, users).await,
            Scenario::LoginStorm => return self.login_storm(backend, database, users).await,
            Scenario::ImportDjango => return self.import_django(backend, database).await,
            Scenario::RateLimitCheck => return self.rate_limit_check(backend, database).await,
            _ => {}
        }
        let concurrency = self.options.concurrency(scenario);
        let mut ceilings = Vec::new();
        let mut wanted: Vec<Ceiling> = Ceiling::for_scenario(scenario).into_iter().collect();
        if scenario == Scenario::SignUp {
            // Sign-up is bound by its one hash far more than by the transport.
            wanted.push(Ceiling::Argon2);
        }
        for ceiling in wanted {
            ceilings.push((ceiling, self.measure_ceiling(ceiling, concurrency, QUICK_SAMPLE).await?));
        }
        let label = format!("{}-{}", backend.name(), scenario.name());
        let argon2 = if scenario.is_framework() { self.argon2_minimum } else { self.argon2 };
        let server = self.start_server_with(database, &label, None, argon2).await?;
        let (channels, client) = server.client(concurrency).await?;
        let channels = Arc::new(channels);
        let client_for = move |slot: usize| Client::new(channels[slot % channels.len()].clone());
        let created = Arc::new(Mutex::new(Vec::new()));
        let make_caller: Box<dyn FnMut(usize) -> Box<dyn Caller>> = match scenario {
            Scenario::SignUp | Scenario::SignUpFramework => {
                let (created, series) = (Arc::clone(&created), self.next_series());
                Box::new(move |slot| {
                    let created = Arc::clone(&created);
                    Box::new(SignUpCaller { client: client_for(slot), series: series.clone(), created })
                })
            }
            Scenario::Login | Scenario::LoginBurst | Scenario::LoginFramework => {
                let verified = self.verified_users(&client, database, users, LOGIN_USERS).await?;
                Box::new(move |slot| Box::new(LoginCaller { client: client_for(slot), users: Arc::clone(&verified) }))
            }
            Scenario::ValidateToken => {
                // One token per request, as many distinct clients present: a
                // cache keyed by the token would otherwise measure itself.
                let sessions = self.access_tokens(&client, database, users).await?;
                let tokens = Arc::new(self.distinct_copies(&sessions, self.options.requests(scenario))?);
                Box::new(move |slot| {
                    Box::new(ValidateTokenCaller { client: client_for(slot), tokens: Arc::clone(&tokens) })
                })
            }
            Scenario::GetCurrentUser => {
                let bearers = bearer_values(&self.access_tokens(&client, database, users).await?)?;
                Box::new(move |slot| {
                    Box::new(GetCurrentUserCaller { client: client_for(slot), bearers: Arc::clone(&bearers) })
                })
            }
            Scenario::Refresh => {
                let verified = self.verified_users(&client, database, users, concurrency.min(LOGIN_USERS)).await?;
                let mut sessions = log_in(&client, &verified, concurrency).await?.into_iter();
                Box::new(move |slot| {
                    let refresh_token = sessions.next().map(|s| s.refresh_token).unwrap_or_default();
                    Box::new(RefreshCaller { client: client_for(slot), refresh_token })
                })
            }
            Scenario::Mixed => {
                let verified = self.verified_users(&client, database, users, LOGIN_USERS).await?;
                let tokens = Arc::new(self.access_tokens(&client, database, users).await?);
                let (created, series) = (Arc::clone(&created), self.next_series());
                Box::new(move |slot| {
                    Box::new(MixedCaller {
                        sign_up: SignUpCaller {
                            client: client_for(slot),
                            series: series.clone(),
                            created: Arc::clone(&created),
                        },
                        login: LoginCaller { client: client_for(slot), users: Arc::clone(&verified) },
                        validate: ValidateTokenCaller { client: client_for(slot), tokens: Arc::clone(&tokens) },
                    })
                })
            }
            Scenario::SignUpToEmail
            | Scenario::LoginEnumeration
            | Scenario::LoginStorm
            | Scenario::ImportDjango
            | Scenario::RateLimitCheck => unreachable!("handled above"),
        };
        let plan =
            Plan { concurrency, requests: self.options.requests(scenario), time_limit: self.options.duration_limit };
        let processes: Vec<_> =
            server.pid().map(|pid| ("server", pid)).into_iter().chain([("bench", std::process::id())]).collect();
        let before = CpuSnapshot::take(&processes);
        let outcome = load::closed_loop(plan, make_caller).await;
        let server_cpu_per_call = cpu_per_call(before.as_ref(), server.pid(), outcome.ok);
        let cpu = cpu_line(before, &processes);
        users.pending.extend(std::mem::take(&mut *created.lock().unwrap_or_else(PoisonError::into_inner)));
        let figures = server.finish().await;
        self.report(Report {
            scenario,
            backend,
            concurrency,
            outcome: &outcome,
            ceilings: &ceilings,
            cpu,
            server_cpu_per_call,
            server: figures,
        });
        Ok(())
    }

    /// Access tokens of verified users, one per login.
    async fn access_tokens(
        &mut self,
        client: &Client,
        database: Option<&BenchDatabase>,
        users: &mut Users,
    ) -> anyhow::Result<Vec<String>> {
        let verified = self.verified_users(client, database, users, TOKENS).await?;
        Ok(log_in(client, &verified, TOKENS).await?.into_iter().map(|session| session.access_token).collect())
    }

    fn report(&mut self, report: Report<'_>) {
        let Report { scenario, backend, concurrency, outcome, ceilings, cpu, server_cpu_per_call, server } = report;
        let backend = self.backend_name(backend);
        println!("== {} · {backend} · {concurrency} callers ==", scenario.name());
        for (_, measured) in ceilings {
            println!("  ceiling, measured just before: {}", measured.line);
        }
        let versus: Vec<String> = ceilings
            .iter()
            .map(|(ceiling, measured)| {
                format!("{} of {}", percent(outcome.throughput(), measured.value), ceiling.name())
            })
            .collect();
        println!(
            "  {} calls in {:.2} s: {:.1} ok/s{}",
            outcome.calls(),
            outcome.elapsed.as_secs_f64(),
            outcome.throughput(),
            if versus.is_empty() { String::new() } else { format!(" = {}", versus.join(", ")) }
        );
        let latencies = &outcome.latencies;
        println!(
            "  latency p50 {}, p90 {}, p99 {}, max {}",
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.9)),
            ms(percentile(latencies, 0.99)),
            ms(percentile(latencies, 1.0))
        );
        println!("  errors: {}{cpu}", outcome.errors_line());
        let cpu_per_call = cpu_per_call_line(server_cpu_per_call, ceilings);
        if !cpu_per_call.is_empty() {
            println!("  server CPU per call: {cpu_per_call}");
        }
        if let Some(figures) = &server {
            println!("  {}", figures.line("server"));
        }
        println!();
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: format!("{:.1}", outcome.throughput()),
            versus: if versus.is_empty() { "–".to_owned() } else { versus.join(", ") },
            p50: ms(percentile(latencies, 0.5)),
            p99: ms(percentile(latencies, 0.99)),
            errors: outcome.errors_line(),
            cpu_per_call: if cpu_per_call.is_empty() { "–".to_owned() } else { cpu_per_call },
            server,
        });
    }

    fn print_summary(&self) {
        if self.rows.is_empty() {
            return;
        }
        println!("== summary ==");
        println!(
            "| scenario | db | ok/s | vs ceiling | p50 | p99 | errors | server CPU/call | start→SERVING | RSS idle | RSS peak |"
        );
        println!("|---|---|---:|---|---:|---:|---|---|---:|---:|---:|");
        for row in &self.rows {
            let (start, idle, peak) = row.server.map_or_else(
                || ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                |f| (ms(f.cold_start), mib(f.idle.rss_kib), mib(f.end.peak_kib)),
            );
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {start} | {idle} | {peak} |",
                row.scenario, row.backend, row.throughput, row.versus, row.p50, row.p99, row.errors, row.cpu_per_call
            );
        }
        for note in &self.notes {
            println!("{note}");
        }
        println!("\nlogs: {}", self.dir.display());
    }
}

/// "0.41 ms (bare verifying server 0.22 ms = 54%)": the server's CPU per call
/// against each ceiling's that has one; the share is the ceiling's cost over
/// the server's, so 100% means nothing is spent beyond what the ceiling does.
fn cpu_per_call_line(server: Option<Duration>, ceilings: &[(Ceiling, Measured)]) -> String {
    let Some(server) = server else { return String::new() };
    let mut line = per_call(server);
    let versus: Vec<String> = ceilings
        .iter()
        .filter_map(|(ceiling, measured)| {
            let bare = measured.cpu_per_call?;
            Some(format!(
                "{} {} = {}",
                ceiling.name(),
                per_call(bare),
                percent(bare.as_secs_f64(), server.as_secs_f64())
            ))
        })
        .collect();
    if !versus.is_empty() {
        line.push_str(&format!(" ({})", versus.join(", ")));
    }
    line
}

/// A per-call cost to the microsecond.
fn per_call(cost: Duration) -> String {
    format!("{:.3} ms", cost.as_secs_f64() * 1000.0)
}
