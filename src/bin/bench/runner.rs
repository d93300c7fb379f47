//! Runs the chosen scenarios: a fresh server per scenario (so that its peak
//! memory is that scenario's), the load, and one report per scenario plus a
//! summary table.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use identity::{grpc::proto, infrastructure::Argon2Settings};
use secrecy::ExposeSecret;

use crate::{
    callers::{
        Client, EmailSeries, GetCurrentUserCaller, LoginCaller, MixedCaller, RefreshCaller, SignUpCaller,
        ValidateTokenCaller, WRONG_PASSWORD, bearer_values, log_in,
    },
    ceilings::{self, BareKind, PUBLIC_KEY_VAR, TokenMint},
    database::BenchDatabase,
    email_flow,
    email_sink::EmailSink,
    load::{self, Caller, Outcome, Plan},
    measure::{Memory, mib, ms, percent, percentile},
    options::{Backend, Options, Scenario},
    pool_rss,
    processes::{Process, free_port, sibling},
};

/// Users the login scenarios spread their calls over.
const LOGIN_USERS: usize = 64;
/// Distinct access tokens the token scenarios present.
const TOKENS: usize = 16;
/// Concurrency of the sign-ups that create users for other scenarios.
const SEED_CONCURRENCY: usize = 16;
/// How long raw argon2 is measured.
const ARGON2_SAMPLE: Duration = Duration::from_secs(4);
/// Calls made against each bare server.
const CEILING_REQUESTS: usize = 20_000;
/// Settling time between a server reporting SERVING and its idle RSS being read.
const SETTLE: Duration = Duration::from_millis(300);

/// The throughput each kind of scenario is compared with.
#[derive(Debug, Default, Clone, Copy)]
struct Ceilings {
    argon2: Option<f64>,
    echo: Option<f64>,
    verify: Option<f64>,
}

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
            Scenario::SignUp | Scenario::Refresh | Scenario::Mixed => Some(Self::Echo),
            Scenario::SignUpToEmail | Scenario::LoginEnumeration => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Argon2 => "raw argon2",
            Self::Echo => "bare echo server",
            Self::Verify => "bare verifying server",
        }
    }

    fn value(self, ceilings: &Ceilings) -> Option<f64> {
        match self {
            Self::Argon2 => ceilings.argon2,
            Self::Echo => ceilings.echo,
            Self::Verify => ceilings.verify,
        }
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

/// The users a backend's scenarios log in as.
#[derive(Default)]
struct Users {
    verified: Vec<String>,
    /// Signed up, not yet marked verified.
    pending: Vec<String>,
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
    server: Option<ServerFigures>,
}

pub struct Bench {
    options: Options,
    run_id: String,
    dir: PathBuf,
    argon2: Argon2Settings,
    /// The servers' signing key, so that tokens survive between scenarios' servers.
    token_secret: String,
    ceilings: Ceilings,
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
            token_secret: secret.expose_secret().to_owned(),
            ceilings: Ceilings::default(),
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
        if self.options.with_pool_rss {
            pool_rss::report(&self.dir).await?;
        }
        self.measure_ceilings().await?;
        for backend in self.options.backends.clone() {
            if self.options.scenarios.is_empty() {
                break;
            }
            let database = match (&self.options.target, &self.options.target_database_url) {
                (Some(_), Some(url)) => Some(BenchDatabase::external(url.clone())),
                (Some(_), None) => None,
                (None, _) => Some(BenchDatabase::create(backend, &self.run_id, &self.options.postgres_url).await?),
            };
            let mut users = Users::default();
            for scenario in self.options.scenarios.clone() {
                if let Err(error) = self.run_scenario(scenario, backend, database.as_ref(), &mut users).await {
                    println!("== {} · {} ==\n  FAILED: {error:#}\n", scenario.name(), self.backend_name(backend));
                }
            }
            if let Some(database) = database {
                database.remove().await;
            }
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

    async fn measure_ceilings(&mut self) -> anyhow::Result<()> {
        let needed = |ceiling: Ceiling| {
            self.options.with_all_ceilings
                || self.options.scenarios.iter().any(|s| Ceiling::for_scenario(*s) == Some(ceiling))
        };
        let (argon2, echo, verify) = (needed(Ceiling::Argon2), needed(Ceiling::Echo), needed(Ceiling::Verify));
        if !(argon2 || echo || verify) {
            return Ok(());
        }
        println!("== ceilings (same machine, same worker count) ==");
        if argon2 {
            let settings = self.argon2;
            let rate = tokio::task::spawn_blocking(move || ceilings::argon2_rate(settings, ARGON2_SAMPLE)).await??;
            println!(
                "  raw argon2: {rate:.1} hashes/s ({} threads hashing in a loop, memory allocated once)",
                settings.max_concurrent
            );
            self.ceilings.argon2 = Some(rate);
        }
        let concurrency = self.options.concurrency.unwrap_or(16);
        if echo {
            let outcome = self.measure_bare(BareKind::Echo, concurrency).await?;
            self.ceilings.echo = Some(outcome.throughput());
        }
        if verify {
            let outcome = self.measure_bare(BareKind::Verify, concurrency).await?;
            self.ceilings.verify = Some(outcome.throughput());
        }
        println!();
        Ok(())
    }

    /// Loads a bare server (a child process, like the real one) with `concurrency` callers.
    async fn measure_bare(&self, kind: BareKind, concurrency: usize) -> anyhow::Result<Outcome> {
        let mint = TokenMint::generate()?;
        let port = free_port()?;
        let me = std::env::current_exe().context("locating the bench executable")?;
        let env = [(PUBLIC_KEY_VAR.to_owned(), mint.public_paserk.clone())];
        let log = self.dir.join(format!("bare-{}.log", kind.name()));
        let mut process =
            Process::spawn("bare server", &me, &["__bare-server", kind.name(), &port.to_string()], &env, log)?;
        process.wait_serving(port, "").await?;
        tokio::time::sleep(SETTLE).await;
        let idle = process.memory()?;
        let channels = load::connect(&format!("http://127.0.0.1:{port}"), concurrency).await?;
        let plan = Plan { concurrency, requests: CEILING_REQUESTS, time_limit: self.options.duration_limit };
        let outcome = match kind {
            BareKind::Echo => {
                load::closed_loop(plan, |slot| {
                    Box::new(EchoCaller { client: Client::new(channels[slot % channels.len()].clone()) })
                })
                .await
            }
            BareKind::Verify => {
                let tokens = Arc::new((0..TOKENS).map(|_| mint.sign()).collect::<anyhow::Result<Vec<_>>>()?);
                load::closed_loop(plan, |slot| {
                    let client = Client::new(channels[slot % channels.len()].clone());
                    Box::new(ValidateTokenCaller { client, tokens: Arc::clone(&tokens) })
                })
                .await
            }
        };
        let end = process.memory()?;
        process.stop().await;
        let name = match kind {
            BareKind::Echo => "bare echo server (GetPublicKeys answers a constant)",
            BareKind::Verify => "bare verifying server (ValidateToken = PASETO v4 verify + claims)",
        };
        println!(
            "  {name}: {:.0} calls/s, p50 {}, p99 {}, errors {}; RSS idle {}, peak {}",
            outcome.throughput(),
            ms(percentile(&outcome.latencies, 0.5)),
            ms(percentile(&outcome.latencies, 0.99)),
            outcome.errors_line(),
            mib(idle.rss_kib),
            mib(end.peak_kib)
        );
        Ok(outcome)
    }

    /// Starts identity-server on `database` (or takes `--target`), waits for SERVING.
    async fn start_server(
        &self,
        database: Option<&BenchDatabase>,
        label: &str,
        amqp: Option<&identity::infrastructure::rabbitmq::MailerTopology>,
    ) -> anyhow::Result<Server> {
        if let Some(target) = &self.options.target {
            return Ok(Server { process: None, url: target.clone(), cold_start: None, idle: None });
        }
        let database = database.context("no database for the server")?;
        let port = free_port()?;
        let argon2 = self.argon2;
        let mut env: Vec<(String, String)> = [
            ("IDENTITY_GRPC_ADDR", format!("127.0.0.1:{port}")),
            ("IDENTITY_DATABASE_URL", database.url.clone()),
            ("IDENTITY_TOKEN_SECRET_KEY", self.token_secret.clone()),
            ("IDENTITY_ARGON2_M_COST", argon2.m_cost.to_string()),
            ("IDENTITY_ARGON2_T_COST", argon2.t_cost.to_string()),
            ("IDENTITY_ARGON2_P_COST", argon2.p_cost.to_string()),
            ("IDENTITY_ARGON2_MAX_CONCURRENT", argon2.max_concurrent.to_string()),
            // Load tests call from one address and reuse emails on purpose.
            ("IDENTITY_RATE_LIMIT_PER_ADDRESS", "0".to_owned()),
            ("IDENTITY_RATE_LIMIT_PER_EMAIL", "0".to_owned()),
            ("IDENTITY_LOGIN_THROTTLE_AFTER", "1000000".to_owned()),
            ("IDENTITY_LOG_FORMAT", "json".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        if let Some(topology) = amqp {
            env.push(("IDENTITY_AMQP_URL".to_owned(), self.options.amqp_url.clone()));
            env.push(("IDENTITY_AMQP_EXCHANGE".to_owned(), topology.exchange.clone()));
        }
        let log = self.dir.join(format!("server-{label}.log"));
        let mut process = Process::spawn("identity-server", &sibling("identity-server")?, &["serve"], &env, log)?;
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
        let missing = count.saturating_sub(users.verified.len() + users.pending.len());
        if missing > 0 {
            let created = Arc::new(Mutex::new(Vec::new()));
            let series = self.next_series();
            let plan = Plan { concurrency: SEED_CONCURRENCY, requests: missing, time_limit: Duration::from_secs(300) };
            let outcome = load::closed_loop(plan, |_| {
                Box::new(SignUpCaller { client: client.clone(), series: series.clone(), created: Arc::clone(&created) })
            })
            .await;
            if !outcome.errors.is_empty() {
                bail!("signing up the bench's users failed: {}", outcome.errors_line());
            }
            users.pending.extend(std::mem::take(&mut *created.lock().unwrap_or_else(PoisonError::into_inner)));
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
            _ => {}
        }
        let concurrency = self.options.concurrency(scenario);
        let requests = self.options.requests(scenario);
        let label = format!("{}-{}", backend.name(), scenario.name());
        let server = self.start_server(database, &label, None).await?;
        let (channels, client) = server.client(concurrency).await?;
        let client_for = |slot: usize| Client::new(channels[slot % channels.len()].clone());
        let plan = Plan { concurrency, requests, time_limit: self.options.duration_limit };
        let outcome = match scenario {
            Scenario::SignUp => {
                let (created, series) = (Arc::new(Mutex::new(Vec::new())), self.next_series());
                let outcome = load::closed_loop(plan, |slot| {
                    let created = Arc::clone(&created);
                    Box::new(SignUpCaller { client: client_for(slot), series: series.clone(), created })
                })
                .await;
                users.pending.extend(std::mem::take(&mut *created.lock().unwrap_or_else(PoisonError::into_inner)));
                outcome
            }
            Scenario::Login | Scenario::LoginBurst => {
                let verified = self.verified_users(&client, database, users, LOGIN_USERS).await?;
                load::closed_loop(plan, |slot| {
                    Box::new(LoginCaller { client: client_for(slot), users: Arc::clone(&verified) })
                })
                .await
            }
            Scenario::ValidateToken | Scenario::GetCurrentUser => {
                let verified = self.verified_users(&client, database, users, TOKENS).await?;
                let sessions = log_in(&client, &verified, TOKENS).await?;
                let tokens: Vec<String> = sessions.into_iter().map(|s| s.access_token).collect();
                if scenario == Scenario::ValidateToken {
                    let tokens = Arc::new(tokens);
                    load::closed_loop(plan, |slot| {
                        Box::new(ValidateTokenCaller { client: client_for(slot), tokens: Arc::clone(&tokens) })
                    })
                    .await
                } else {
                    let bearers = bearer_values(&tokens)?;
                    load::closed_loop(plan, |slot| {
                        Box::new(GetCurrentUserCaller { client: client_for(slot), bearers: Arc::clone(&bearers) })
                    })
                    .await
                }
            }
            Scenario::Refresh => {
                let verified = self.verified_users(&client, database, users, concurrency.min(LOGIN_USERS)).await?;
                let mut sessions = log_in(&client, &verified, concurrency).await?.into_iter();
                load::closed_loop(plan, |slot| {
                    let refresh_token = sessions.next().map(|s| s.refresh_token).unwrap_or_default();
                    Box::new(RefreshCaller { client: client_for(slot), refresh_token })
                })
                .await
            }
            Scenario::Mixed => {
                let verified = self.verified_users(&client, database, users, LOGIN_USERS).await?;
                let sessions = log_in(&client, &verified, TOKENS).await?;
                let tokens = Arc::new(sessions.into_iter().map(|s| s.access_token).collect::<Vec<_>>());
                let (created, series) = (Arc::new(Mutex::new(Vec::new())), self.next_series());
                let outcome = load::closed_loop(plan, |slot| -> Box<dyn Caller> {
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
                .await;
                users.pending.extend(std::mem::take(&mut *created.lock().unwrap_or_else(PoisonError::into_inner)));
                outcome
            }
            Scenario::SignUpToEmail | Scenario::LoginEnumeration => unreachable!("handled above"),
        };
        let figures = server.finish().await;
        self.report(scenario, backend, concurrency, &outcome, figures);
        Ok(())
    }

    fn report(
        &mut self,
        scenario: Scenario,
        backend: Backend,
        concurrency: usize,
        outcome: &Outcome,
        server: Option<ServerFigures>,
    ) {
        let backend = self.backend_name(backend);
        println!("== {} · {backend} · {concurrency} callers ==", scenario.name());
        let ceiling = Ceiling::for_scenario(scenario).and_then(|c| Some((c, c.value(&self.ceilings)?)));
        let versus = ceiling.map_or_else(String::new, |(ceiling, value)| {
            format!("{} of {} ({value:.1}/s)", percent(outcome.throughput(), value), ceiling.name())
        });
        println!(
            "  {} calls in {:.2} s: {:.1} ok/s{}",
            outcome.calls(),
            outcome.elapsed.as_secs_f64(),
            outcome.throughput(),
            if versus.is_empty() { String::new() } else { format!(" = {versus}") }
        );
        if scenario == Scenario::SignUp
            && let Some(argon2) = self.ceilings.argon2
        {
            println!("  (each sign-up hashes once: {} of raw argon2)", percent(outcome.throughput(), argon2));
        }
        let latencies = &outcome.latencies;
        println!(
            "  latency p50 {}, p90 {}, p99 {}, max {}",
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.9)),
            ms(percentile(latencies, 0.99)),
            ms(percentile(latencies, 1.0))
        );
        println!("  errors: {}", outcome.errors_line());
        if let Some(figures) = &server {
            println!("  {}", figures.line("server"));
        }
        println!();
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: format!("{:.1}", outcome.throughput()),
            versus: ceiling.map_or_else(
                || "–".to_owned(),
                |(ceiling, value)| format!("{} of {}", percent(outcome.throughput(), value), ceiling.name()),
            ),
            p50: ms(percentile(latencies, 0.5)),
            p99: ms(percentile(latencies, 0.99)),
            errors: outcome.errors_line(),
            server,
        });
    }

    /// Unknown email vs known email with a wrong password, one call at a time:
    /// if the two take measurably different times, login enumerates accounts.
    async fn login_enumeration(
        &mut self,
        backend: Backend,
        database: Option<&BenchDatabase>,
        users: &mut Users,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::LoginEnumeration;
        let samples = self.options.requests(scenario);
        let label = format!("{}-{}", backend.name(), scenario.name());
        let server = self.start_server(database, &label, None).await?;
        let (_, mut client) = server.client(1).await?;
        let verified = self.verified_users(&client, database, users, 1).await?;
        let known = verified[0].clone();
        let unknown = |index: usize| format!("nobody-{}-{index}@example.com", self.run_id);
        // A few calls first, so that both workers have their memory before timing starts.
        for index in 0..6 {
            let email = if index % 2 == 0 { unknown(index) } else { known.clone() };
            let _ = client.login(proto::LoginRequest { email, password: WRONG_PASSWORD.to_owned() }).await;
        }
        let (mut unknown_times, mut known_times, mut unexpected) = (Vec::new(), Vec::new(), Outcome::default());
        let stop_at = Instant::now() + self.options.duration_limit;
        for index in 0..samples {
            if Instant::now() >= stop_at {
                break;
            }
            let is_unknown = index % 2 == 0;
            let email = if is_unknown { unknown(index) } else { known.clone() };
            let sent = Instant::now();
            let answer = client.login(proto::LoginRequest { email, password: WRONG_PASSWORD.to_owned() }).await;
            let took = sent.elapsed();
            match answer {
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    if is_unknown { unknown_times.push(took) } else { known_times.push(took) }
                }
                Err(status) => *unexpected.errors.entry(load::code_name(&status)).or_default() += 1,
                Ok(_) => *unexpected.errors.entry("OK (a wrong password was accepted!)".to_owned()).or_default() += 1,
            }
        }
        unknown_times.sort_unstable();
        known_times.sort_unstable();
        let figures = server.finish().await;
        let backend = self.backend_name(backend);
        println!("== {} · {backend} · one call at a time ==", scenario.name());
        let (unknown_p50, known_p50) = (percentile(&unknown_times, 0.5), percentile(&known_times, 0.5));
        for (name, times) in [("unknown email", &unknown_times), ("known email, wrong password", &known_times)] {
            println!(
                "  {name:<28} n={:<4} median {}, p90 {}",
                times.len(),
                ms(percentile(times, 0.5)),
                ms(percentile(times, 0.9))
            );
        }
        let difference = known_p50.as_secs_f64() - unknown_p50.as_secs_f64();
        let relative = percent(difference.abs(), unknown_p50.as_secs_f64());
        println!(
            "  median difference (known − unknown): {:+.2} ms ({relative} of the unknown-email median); p90 difference {:+.2} ms",
            difference * 1000.0,
            (percentile(&known_times, 0.9).as_secs_f64() - percentile(&unknown_times, 0.9).as_secs_f64()) * 1000.0
        );
        println!("  unexpected answers: {}", unexpected.errors_line());
        if let Some(figures) = &figures {
            println!("  {}", figures.line("server"));
        }
        println!();
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: "–".to_owned(),
            versus: format!("median Δ {:+.2} ms ({relative})", difference * 1000.0),
            p50: format!("{} / {}", ms(unknown_p50), ms(known_p50)),
            p99: format!("{} / {}", ms(percentile(&unknown_times, 0.99)), ms(percentile(&known_times, 0.99))),
            errors: unexpected.errors_line(),
            server: figures,
        });
        Ok(())
    }

    async fn signup_to_email(&mut self, backend: Backend, database: Option<&BenchDatabase>) -> anyhow::Result<()> {
        let scenario = Scenario::SignUpToEmail;
        if self.options.target.is_some() {
            println!("== {} ==\n  skipped: it starts its own server and mailer (not with --target)\n", scenario.name());
            return Ok(());
        }
        if let Err(error) = email_flow::broker_reachable(&self.options.amqp_url).await {
            println!("== {} ==\n  skipped: RabbitMQ unreachable at {}: {error}\n", scenario.name(), self.options.amqp_url);
            return Ok(());
        }
        let database = database.context("no database for the server")?;
        let topology = email_flow::topology(&self.run_id, backend.name());
        let outcome = self.signup_to_email_with(backend, database, &topology).await;
        email_flow::delete_topology(&self.options.amqp_url, &topology).await;
        outcome
    }

    async fn signup_to_email_with(
        &mut self,
        backend: Backend,
        database: &BenchDatabase,
        topology: &identity::infrastructure::rabbitmq::MailerTopology,
    ) -> anyhow::Result<()> {
        let scenario = Scenario::SignUpToEmail;
        let sink = EmailSink::start().await?;
        let label = format!("{}-{}", backend.name(), scenario.name());
        let server = self.start_server(Some(database), &label, Some(topology)).await?;
        let health_port = free_port()?;
        let env: Vec<(String, String)> = [
            ("IDENTITY_AMQP_URL", self.options.amqp_url.clone()),
            ("IDENTITY_AMQP_EXCHANGE", topology.exchange.clone()),
            ("IDENTITY_MAILER_QUEUE", topology.queue.clone()),
            ("IDENTITY_DATABASE_URL", database.url.clone()),
            ("IDENTITY_AUTO_MIGRATE", "false".to_owned()),
            ("IDENTITY_EMAIL_PROVIDER", "sendgrid".to_owned()),
            ("SENDGRID_API_KEY", "SG.bench-not-a-key".to_owned()),
            ("SENDGRID_BASE_URL", format!("http://127.0.0.1:{}", sink.port)),
            ("IDENTITY_EMAIL_FROM", "no-reply@example.com".to_owned()),
            ("IDENTITY_MAILER_HEALTH_ADDR", format!("127.0.0.1:{health_port}")),
            ("IDENTITY_LOG_FORMAT", "json".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let log = self.dir.join(format!("mailer-{label}.log"));
        let mut mailer = Process::spawn("identity-mailer", &sibling("identity-mailer")?, &[], &env, log)?;
        let mailer_start = mailer.wait_serving(health_port, "").await?;
        tokio::time::sleep(SETTLE).await;
        let mailer_idle = mailer.memory()?;

        let (_, client) = server.client(16).await?;
        let series = self.next_series();
        let rate = self.options.signup_rate;
        let requests = self.options.requests(scenario);
        let result =
            email_flow::run(&client, &sink, &series, rate, requests, self.options.duration_limit).await;
        let mailer_end = mailer.memory()?;
        mailer.stop().await;
        let figures = server.finish().await;

        let backend = self.backend_name(backend);
        let sign_ups = &result.sign_ups;
        println!("== {} · {backend} · {rate} sign-ups/s offered ==", scenario.name());
        println!(
            "  {} sign-ups in {:.2} s ({:.1} ok/s); sign-up latency p50 {}, p99 {}; errors: {}",
            sign_ups.calls(),
            sign_ups.elapsed.as_secs_f64(),
            sign_ups.throughput(),
            ms(percentile(&sign_ups.latencies, 0.5)),
            ms(percentile(&sign_ups.latencies, 0.99)),
            sign_ups.errors_line()
        );
        println!(
            "  sign-up OK → email at the SendGrid stand-in: p50 {}, p90 {}, p99 {}, max {}; {} of {} emails missing after {}s",
            ms(result.delay(0.5)),
            ms(result.delay(0.9)),
            ms(result.delay(0.99)),
            ms(result.delay(1.0)),
            result.missing,
            result.delays.len() + result.missing,
            30
        );
        if let Some(figures) = &figures {
            println!("  {}", figures.line("server"));
        }
        println!(
            "  mailer: SERVING {} after start; RSS idle {}, after the run {}, peak (VmHWM) {}",
            ms(mailer_start),
            mib(mailer_idle.rss_kib),
            mib(mailer_end.rss_kib),
            mib(mailer_end.peak_kib)
        );
        println!();
        self.notes.push(format!(
            "mailer ({backend}): RSS idle {}, peak {}",
            mib(mailer_idle.rss_kib),
            mib(mailer_end.peak_kib)
        ));
        self.rows.push(Row {
            scenario: scenario.name(),
            backend,
            throughput: format!("{:.1}", sign_ups.throughput()),
            versus: format!("email p99 {}", ms(result.delay(0.99))),
            p50: ms(percentile(&sign_ups.latencies, 0.5)),
            p99: ms(percentile(&sign_ups.latencies, 0.99)),
            errors: if result.missing > 0 {
                format!("{}; {} emails missing", sign_ups.errors_line(), result.missing)
            } else {
                sign_ups.errors_line()
            },
            server: figures,
        });
        Ok(())
    }

    fn print_summary(&self) {
        if self.rows.is_empty() {
            return;
        }
        println!("== summary ==");
        println!(
            "| scenario | db | ok/s | vs ceiling | p50 | p99 | errors | start→SERVING | RSS idle | RSS peak |"
        );
        println!("|---|---|---:|---|---:|---:|---|---:|---:|---:|");
        for row in &self.rows {
            let (start, idle, peak) = row.server.map_or_else(
                || ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                |f| (ms(f.cold_start), mib(f.idle.rss_kib), mib(f.end.peak_kib)),
            );
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {start} | {idle} | {peak} |",
                row.scenario, row.backend, row.throughput, row.versus, row.p50, row.p99, row.errors
            );
        }
        for note in &self.notes {
            println!("{note}");
        }
        println!("\nlogs: {}", self.dir.display());
    }
}

/// `GetPublicKeys` against the bare echo server.
struct EchoCaller {
    client: Client,
}

#[async_trait::async_trait]
impl Caller for EchoCaller {
    async fn call(&mut self, _index: usize) -> Result<(), tonic::Status> {
        self.client.get_public_keys(proto::GetPublicKeysRequest {}).await?;
        Ok(())
    }
}
