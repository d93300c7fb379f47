//! The command line: `identity-bench <scenario> [options]`.

use std::time::Duration;

use clap::{Parser, ValueEnum};
pub use testkit::Backend;

/// Load generator and ceilings benchmark: starts identity-server (and for
/// signup-to-email identity-mailer) from next to itself, loads it, and compares
/// each figure with a ceiling measured on the same machine.
#[derive(Debug, Parser)]
#[command(name = "identity-bench")]
pub struct Cli {
    /// What to measure
    #[arg(value_enum)]
    command: Command,
    /// Concurrent callers [default per scenario; 16 for most]
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Requests per scenario [default per scenario]
    #[arg(long, value_name = "N")]
    requests: Option<usize>,
    /// Stop issuing requests after this long
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    duration_limit: u64,
    /// Where the server stores its data [default: both for `all`, else sqlite]
    #[arg(long, value_enum)]
    database: Option<DatabaseChoice>,
    /// Load an already running server instead of starting one (no RSS or
    /// start-up figures; login scenarios need --database-url)
    #[arg(long, value_name = "http://host:port")]
    target: Option<String>,
    /// With --target: the server's database, to mark bench users verified
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// PostgreSQL to create the bench database in
    #[arg(long, value_name = "URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// RabbitMQ for signup-to-email
    #[arg(long, value_name = "URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Signups per second offered by signup-to-email
    #[arg(long, value_name = "N", default_value_t = 50)]
    rate: u32,
    /// A setting for every server the bench starts, over the bench's own
    /// (repeatable). The bench's environment never reaches the server: an
    /// `IDENTITY_…` variable exported in the shell is ignored
    #[arg(long = "server-env", value_name = "NAME=VALUE", value_parser = server_setting)]
    server_env: Vec<(String, String)>,
}

fn server_setting(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if name.starts_with("IDENTITY_") => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{raw:?} is not IDENTITY_NAME=VALUE")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Command {
    Signup,
    Login,
    ValidateToken,
    GetCurrentUser,
    Refresh,
    Mixed,
    SignupToEmail,
    LoginEnumeration,
    LoginBurst,
    /// ValidateToken's p99 while 64 callers log in, against its p99 at rest
    LoginStorm,
    /// `identity-server import-django` of --requests Django users (default
    /// 50,000) from SQLite, against a plain batched copy of the same rows
    ImportDjango,
    /// What one rate-limit check costs: VerifyEmail with unknown tokens, the
    /// limits off and then on (a budget never spent; on PostgreSQL the
    /// shared table's upsert), server CPU per call of each
    RateLimitCheck,
    /// SignUp, Login, RefreshSession and ValidateToken with argon2 at its minimum
    /// cost (m=8, t=1, p=1): what everything around the crypto costs, as server
    /// CPU per request
    Framework,
    /// The three ceilings only (raw argon2, bare echo server, bare verifying server)
    Ceilings,
    /// Peak RSS of 64 concurrent hashes through the hashing pool vs per-call allocation
    PoolRss,
    /// pool-rss, the ceilings, then every scenario (the framework ones
    /// included) on every database
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatabaseChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    SignUp,
    Login,
    ValidateToken,
    GetCurrentUser,
    Refresh,
    Mixed,
    SignUpToEmail,
    LoginEnumeration,
    LoginBurst,
    LoginStorm,
    /// The Django import command, rows per second.
    ImportDjango,
    /// A rate-limit check, as the server CPU it adds to a cheap call.
    RateLimitCheck,
    /// SignUp with argon2 at its minimum cost.
    SignUpFramework,
    /// Login with argon2 at its minimum cost (as the users' hashes are).
    LoginFramework,
}

impl Scenario {
    /// What `framework` runs: the calls that hash, at the minimum cost, and the
    /// two that never hash, as they are.
    pub const FRAMEWORK: [Self; 4] = [Self::SignUpFramework, Self::LoginFramework, Self::Refresh, Self::ValidateToken];

    /// The order of `all`: sign-up first, because it creates the users the
    /// other scenarios log in as.
    pub const ALL: [Self; 14] = [
        Self::SignUp,
        Self::Login,
        Self::ValidateToken,
        Self::GetCurrentUser,
        Self::Refresh,
        Self::Mixed,
        Self::LoginEnumeration,
        Self::LoginBurst,
        Self::LoginStorm,
        Self::SignUpToEmail,
        Self::SignUpFramework,
        Self::LoginFramework,
        Self::ImportDjango,
        Self::RateLimitCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SignUp => "signup",
            Self::Login => "login",
            Self::ValidateToken => "validate-token",
            Self::GetCurrentUser => "get-current-user",
            Self::Refresh => "refresh",
            Self::Mixed => "mixed",
            Self::SignUpToEmail => "signup-to-email",
            Self::LoginEnumeration => "login-enumeration",
            Self::LoginBurst => "login-burst",
            Self::LoginStorm => "login-storm",
            Self::ImportDjango => "import-django",
            Self::RateLimitCheck => "rate-limit-check",
            Self::SignUpFramework => "signup-framework",
            Self::LoginFramework => "login-framework",
        }
    }

    /// Scenarios that measure the service around the crypto run with argon2
    /// at its minimum cost, and log in as users whose hashes have that cost.
    pub fn is_framework(self) -> bool {
        matches!(self, Self::SignUpFramework | Self::LoginFramework)
    }

    /// Sized so that `all` stays within a few minutes on two cores: the
    /// hashing scenarios are bounded by argon2 (tens per second), the others
    /// by the transport (thousands per second).
    pub fn default_requests(self) -> usize {
        match self {
            Self::SignUp => 200,
            Self::Login => 300,
            Self::ValidateToken | Self::GetCurrentUser => 20_000,
            Self::Refresh => 5_000,
            Self::Mixed => 3_000,
            Self::SignUpToEmail => 500,
            Self::LoginEnumeration => 200,
            Self::LoginBurst => 1_000,
            // Validations sampled at rest and then during the storm.
            Self::LoginStorm => 4_000,
            Self::SignUpFramework => 10_000,
            Self::LoginFramework => 10_000,
            Self::ImportDjango => 50_000,
            // Per server; four servers: limits off, on, off, on.
            Self::RateLimitCheck => 10_000,
        }
    }

    pub fn default_concurrency(self) -> usize {
        match self {
            // One call at a time: the timing of each path alone, nothing queued.
            Self::LoginEnumeration => 1,
            Self::LoginBurst => 1_000,
            _ => 16,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenarios: Vec<Scenario>,
    pub with_pool_rss: bool,
    /// Measure every ceiling even when the scenarios chosen do not need it.
    pub with_all_ceilings: bool,
    pub concurrency: Option<usize>,
    pub requests: Option<usize>,
    pub duration_limit: Duration,
    pub backends: Vec<Backend>,
    pub target: Option<String>,
    pub target_database_url: Option<String>,
    pub postgres_url: String,
    pub amqp_url: String,
    pub signup_rate: u32,
    /// `--server-env`: set on every server started, last.
    pub server_env: Vec<(String, String)>,
}

impl Options {
    pub fn concurrency(&self, scenario: Scenario) -> usize {
        self.concurrency.unwrap_or(scenario.default_concurrency()).max(1)
    }

    pub fn requests(&self, scenario: Scenario) -> usize {
        self.requests.unwrap_or(scenario.default_requests()).max(1)
    }
}

impl From<Cli> for Options {
    fn from(cli: Cli) -> Self {
        let scenario = |scenario| (vec![scenario], false, false);
        let (scenarios, with_pool_rss, with_all_ceilings) = match cli.command {
            Command::Signup => scenario(Scenario::SignUp),
            Command::Login => scenario(Scenario::Login),
            Command::ValidateToken => scenario(Scenario::ValidateToken),
            Command::GetCurrentUser => scenario(Scenario::GetCurrentUser),
            Command::Refresh => scenario(Scenario::Refresh),
            Command::Mixed => scenario(Scenario::Mixed),
            Command::SignupToEmail => scenario(Scenario::SignUpToEmail),
            Command::LoginEnumeration => scenario(Scenario::LoginEnumeration),
            Command::LoginBurst => scenario(Scenario::LoginBurst),
            Command::LoginStorm => scenario(Scenario::LoginStorm),
            Command::ImportDjango => scenario(Scenario::ImportDjango),
            Command::RateLimitCheck => scenario(Scenario::RateLimitCheck),
            Command::Framework => (Scenario::FRAMEWORK.to_vec(), false, false),
            Command::Ceilings => (Vec::new(), false, true),
            Command::PoolRss => (Vec::new(), true, false),
            Command::All => (Scenario::ALL.to_vec(), true, true),
        };
        let both = vec![Backend::Sqlite, Backend::Postgres];
        let mut backends = match (cli.database, cli.command) {
            (Some(DatabaseChoice::Sqlite), _) => vec![Backend::Sqlite],
            (Some(DatabaseChoice::Postgres), _) => vec![Backend::Postgres],
            (Some(DatabaseChoice::Both), _) | (None, Command::All) => both,
            (None, _) => vec![Backend::Sqlite],
        };
        if cli.target.is_some() {
            // One server, whatever it stores its data in.
            backends.truncate(1);
        }
        Self {
            scenarios,
            with_pool_rss,
            with_all_ceilings,
            concurrency: cli.concurrency,
            requests: cli.requests,
            duration_limit: Duration::from_secs(cli.duration_limit),
            backends,
            target: cli.target.map(|target| target.trim_end_matches('/').to_owned()),
            target_database_url: cli.database_url,
            postgres_url: cli.postgres_url,
            amqp_url: cli.amqp_url,
            signup_rate: cli.rate,
            server_env: cli.server_env,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Options, clap::Error> {
        Cli::try_parse_from(std::iter::once("identity-bench").chain(raw.split_whitespace())).map(Options::from)
    }

    #[test]
    fn a_scenario_takes_its_defaults_unless_told_otherwise() {
        let options = parse("login").unwrap();
        assert_eq!(options.scenarios, vec![Scenario::Login]);
        assert_eq!((options.concurrency(Scenario::Login), options.requests(Scenario::Login)), (16, 300));
        let options = parse("login --concurrency 4 --requests 10 --database postgres").unwrap();
        assert_eq!((options.concurrency(Scenario::Login), options.requests(Scenario::Login)), (4, 10));
        assert_eq!(options.backends, vec![Backend::Postgres]);
    }

    #[test]
    fn server_settings_are_identity_variables_given_as_name_equals_value() {
        let options = parse("login-storm --server-env IDENTITY_ARGON2_NICE=19 --server-env IDENTITY_X=a=b").unwrap();
        let expected = [("IDENTITY_ARGON2_NICE", "19"), ("IDENTITY_X", "a=b")];
        assert_eq!(options.server_env, expected.map(|(name, value)| (name.to_owned(), value.to_owned())));
        assert!(parse("login --server-env PATH=/tmp").is_err());
        assert!(parse("login --server-env IDENTITY_ARGON2_NICE").is_err());
    }

    #[test]
    fn all_runs_every_scenario_on_both_databases() {
        let options = parse("all").unwrap();
        assert_eq!(options.scenarios.len(), Scenario::ALL.len());
        assert_eq!(options.backends, vec![Backend::Sqlite, Backend::Postgres]);
    }

    #[test]
    fn each_scenario_is_asked_for_by_its_name() {
        for scenario in Scenario::ALL.into_iter().filter(|scenario| !scenario.is_framework()) {
            assert_eq!(parse(scenario.name()).unwrap().scenarios, vec![scenario]);
        }
    }

    #[test]
    fn framework_runs_the_hashing_calls_at_minimum_cost_and_the_others_as_they_are() {
        let options = parse("framework --database both").unwrap();
        assert_eq!(options.scenarios, Scenario::FRAMEWORK.to_vec());
        assert_eq!(options.backends, vec![Backend::Sqlite, Backend::Postgres]);
        assert!(Scenario::SignUpFramework.is_framework() && !Scenario::Refresh.is_framework());
    }

    #[test]
    fn a_target_is_one_server_whatever_the_database() {
        let options = parse("all --target http://127.0.0.1:50051/ --database-url sqlite://x.db").unwrap();
        assert_eq!(options.backends, vec![Backend::Sqlite]);
        assert_eq!(options.target.as_deref(), Some("http://127.0.0.1:50051"));
    }

    #[test]
    fn unknown_scenarios_options_and_values_are_refused() {
        for bad in
            ["", "logn", "login --concurency 4", "login --requests many", "login --database mysql", "login --rate"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
