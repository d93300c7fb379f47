//! The command line: `identity-bench <scenario> [options]`.

use std::time::Duration;

use anyhow::{Context, bail};

pub const USAGE: &str = "\
usage: identity-bench <scenario> [options]

scenarios:
  signup | login | validate-token | get-current-user | refresh | mixed
  signup-to-email | login-enumeration | login-burst
  ceilings   the three ceilings only (raw argon2, bare echo server, bare verifying server)
  pool-rss   peak RSS of 64 concurrent hashes through the hashing pool vs per-call allocation
  all        pool-rss, the ceilings, then every scenario on every database

options:
  --concurrency N          concurrent callers (default per scenario; 16 for most)
  --requests N             requests per scenario (default per scenario)
  --duration-limit SECS    stop issuing requests after this long (default 60)
  --database sqlite|postgres|both
                           where the server stores its data (default: both for `all`, else sqlite)
  --target http://host:port
                           load an already running server instead of starting one
                           (no RSS or start-up figures; login scenarios need --database-url)
  --database-url URL       with --target: the server's database, to mark bench users verified
  --postgres-url URL       PostgreSQL to create the bench database in
                           (default postgres://postgres@127.0.0.1:5432/test)
  --amqp-url URL           RabbitMQ for signup-to-email (default amqp://guest:guest@127.0.0.1:5672/%2f)
  --rate N                 signups per second offered by signup-to-email (default 50)";

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
}

impl Scenario {
    /// The order of `all`: sign-up first, because it creates the users the
    /// other scenarios log in as.
    pub const ALL: [Self; 9] = [
        Self::SignUp,
        Self::Login,
        Self::ValidateToken,
        Self::GetCurrentUser,
        Self::Refresh,
        Self::Mixed,
        Self::LoginEnumeration,
        Self::LoginBurst,
        Self::SignUpToEmail,
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
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scenario| scenario.name() == raw)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
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
}

impl Options {
    pub fn concurrency(&self, scenario: Scenario) -> usize {
        self.concurrency.unwrap_or(scenario.default_concurrency()).max(1)
    }

    pub fn requests(&self, scenario: Scenario) -> usize {
        self.requests.unwrap_or(scenario.default_requests()).max(1)
    }

    /// # Errors
    /// An unknown scenario or option, or a value that does not parse.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let Some(command) = args.first() else { bail!("no scenario given\n\n{USAGE}") };
        let mut options = Self {
            scenarios: Vec::new(),
            with_pool_rss: false,
            with_all_ceilings: false,
            concurrency: None,
            requests: None,
            duration_limit: Duration::from_secs(60),
            backends: vec![Backend::Sqlite],
            target: None,
            target_database_url: None,
            postgres_url: "postgres://postgres@127.0.0.1:5432/test".to_owned(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            signup_rate: 50,
        };
        match command.as_str() {
            "all" => {
                options.scenarios = Scenario::ALL.to_vec();
                options.with_pool_rss = true;
                options.with_all_ceilings = true;
                options.backends = vec![Backend::Sqlite, Backend::Postgres];
            }
            "ceilings" => options.with_all_ceilings = true,
            "pool-rss" => options.with_pool_rss = true,
            "-h" | "--help" | "help" => bail!("{USAGE}"),
            other => {
                let scenario =
                    Scenario::parse(other).with_context(|| format!("unknown scenario {other:?}\n\n{USAGE}"))?;
                options.scenarios.push(scenario);
            }
        }
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            let mut value = || rest.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--concurrency" => options.concurrency = Some(number(flag, value()?)?),
                "--requests" => options.requests = Some(number(flag, value()?)?),
                "--duration-limit" => options.duration_limit = Duration::from_secs(number(flag, value()?)?),
                "--rate" => options.signup_rate = number(flag, value()?)?,
                "--database" => {
                    options.backends = match value()?.as_str() {
                        "sqlite" => vec![Backend::Sqlite],
                        "postgres" => vec![Backend::Postgres],
                        "both" => vec![Backend::Sqlite, Backend::Postgres],
                        other => bail!("--database {other:?}: expected sqlite, postgres or both"),
                    }
                }
                "--target" => options.target = Some(value()?.trim_end_matches('/').to_owned()),
                "--database-url" => options.target_database_url = Some(value()?.clone()),
                "--postgres-url" => options.postgres_url = value()?.clone(),
                "--amqp-url" => options.amqp_url = value()?.clone(),
                other => bail!("unknown option {other:?}\n\n{USAGE}"),
            }
        }
        if options.target.is_some() {
            // One server, whatever it stores its data in.
            options.backends.truncate(1);
        }
        Ok(options)
    }
}

fn number<T: std::str::FromStr>(flag: &str, raw: &str) -> anyhow::Result<T> {
    raw.parse().map_err(|_| anyhow::anyhow!("{flag} {raw:?}: expected a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(raw: &str) -> Vec<String> {
        raw.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_scenario_takes_its_defaults_unless_told_otherwise() {
        let options = Options::parse(&args("login")).unwrap();
        assert_eq!(options.scenarios, vec![Scenario::Login]);
        assert_eq!((options.concurrency(Scenario::Login), options.requests(Scenario::Login)), (16, 300));
        let options = Options::parse(&args("login --concurrency 4 --requests 10 --database postgres")).unwrap();
        assert_eq!((options.concurrency(Scenario::Login), options.requests(Scenario::Login)), (4, 10));
        assert_eq!(options.backends, vec![Backend::Postgres]);
    }

    #[test]
    fn all_runs_every_scenario_on_both_databases() {
        let options = Options::parse(&args("all")).unwrap();
        assert_eq!(options.scenarios.len(), Scenario::ALL.len());
        assert_eq!(options.backends, vec![Backend::Sqlite, Backend::Postgres]);
    }

    #[test]
    fn unknown_scenarios_options_and_values_are_refused() {
        for bad in
            ["", "logn", "login --concurency 4", "login --requests many", "login --database mysql", "login --rate"]
        {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
