//! The composition roots of both binaries: configuration → adapters → use cases
//! → services and background tasks. The only modules that see every layer.

mod adapters;
pub mod mailer;
pub mod server;
mod use_cases;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use mailer::Mailer;
pub use server::Application;

use crate::{
    domain::ports::{Clock, EmailSender},
    infrastructure::{
        SystemClock,
        email::{EmailProvider, EmailSettings, build_sender},
        sea_orm::{DatabaseSettings, connect, migrate},
    },
    observability::Metrics,
};

/// Replacements for adapters, for tests: a fixed clock, a capturing email sender.
/// Both binaries take them.
#[derive(Default, Clone)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub email_sender: Option<Arc<dyn EmailSender>>,
}

impl Overrides {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }

    /// The capturing sender, or the provider the settings name.
    fn email_sender(&self, settings: &EmailSettings, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<dyn EmailSender>> {
        if let Some(sender) = &self.email_sender {
            return Ok(Arc::clone(sender));
        }
        if settings.provider == EmailProvider::Console {
            tracing::warn!(
                "IDENTITY_EMAIL_PROVIDER=console: every verification and password-reset link is written to the log; for development only"
            );
        }
        build_sender(settings, metrics)
    }
}

/// Connects and, when the settings say so, applies pending migrations.
async fn open_database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings).await?;
    if settings.auto_migrate {
        migrate(&db).await?;
    }
    Ok(db)
}
