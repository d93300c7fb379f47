//! `identity-server [serve|migrate|generate-key|import-django ...]`.

use secrecy::ExposeSecret;

use crate::{
    config::{MailerSettings, Settings, TelemetrySettings},
    infrastructure::{
        PasetoTokens,
        sea_orm::{connect, migrate},
    },
    startup::{Application, Mailer, Overrides},
    telemetry::{self, TelemetryGuard},
};

const USAGE: &str = "usage: identity-server [serve|migrate|generate-key|import-django --source URL ...]";

/// # Errors
/// Bad configuration or a failure to start; the message is one line for the operator.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("migrate") => {
            let settings = Settings::from_env()?;
            let _telemetry = telemetry::init(settings.telemetry.log_format, None)?;
            let db = connect(&settings.database).await?;
            migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        // No log subscriber: stdout carries the summary line alone, for the
        // scripts that run the import; progress goes to stderr.
        Some("import-django") => crate::import::run(&Settings::from_env()?, &args[1..]).await,
        Some("generate-key") => {
            let (secret, public) = PasetoTokens::generate_secret_key()?;
            println!("IDENTITY_TOKEN_SECRET_KEY={}", secret.expose_secret());
            println!("# public key (GetPublicKeys shows it too): {public}");
            Ok(())
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; {USAGE}"),
    }
}

/// The mailer: consume until SIGTERM/SIGINT, then finish in-flight sends.
///
/// # Errors
/// Bad configuration or a failure to start.
pub async fn run_mailer() -> anyhow::Result<()> {
    let settings = MailerSettings::from_env()?;
    let _telemetry = init_telemetry(&settings.telemetry)?;
    let mailer = Mailer::build(settings, Overrides::default()).await?;
    let stop = mailer.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight emails");
        stop.cancel();
    });
    mailer.run_until_stopped().await
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let _telemetry = init_telemetry(&settings.telemetry)?;
    let app = Application::build(settings, Overrides::default()).await?;
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: draining in-flight calls");
        stop.cancel();
    });
    app.run_until_stopped().await
}

fn init_telemetry(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    telemetry::init(settings.log_format, settings.otlp.clone())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
