//! How emails leave: `IDENTITY_EMAIL_*`, `SENDGRID_*` and `IDENTITY_SMTP_URL`,
//! read alike by the server (without a broker) and the mailer.

use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Source, error};
use crate::{
    domain::Email,
    infrastructure::email::{EmailProvider, EmailSettings},
};

/// # Errors
/// The first invalid variable.
pub fn email<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<EmailSettings, ConfigError> {
    let provider = match env.string("IDENTITY_EMAIL_PROVIDER", "console").to_ascii_lowercase().as_str() {
        "console" => EmailProvider::Console,
        "sendgrid" => EmailProvider::SendGrid,
        "smtp" => EmailProvider::Smtp,
        other => {
            return Err(error("IDENTITY_EMAIL_PROVIDER", format!("{other:?} is not one of sendgrid, smtp, console")));
        }
    };
    let from = Email::parse(&env.string("IDENTITY_EMAIL_FROM", "no-reply@identity.invalid"))
        .map_err(|e| error("IDENTITY_EMAIL_FROM", format!("not a valid address: {e}")))?;
    let sendgrid_api_key = env.get("SENDGRID_API_KEY").map(|k| SecretString::from(k.trim().to_owned()));
    if provider == EmailProvider::SendGrid && sendgrid_api_key.is_none() {
        return Err(error("SENDGRID_API_KEY", "is required when IDENTITY_EMAIL_PROVIDER=sendgrid"));
    }
    let sendgrid_base_url =
        env.string("SENDGRID_BASE_URL", "https://api.sendgrid.com").trim_end_matches('/').to_owned();
    if !(sendgrid_base_url.starts_with("https://") || sendgrid_base_url.starts_with("http://")) {
        return Err(error("SENDGRID_BASE_URL", "must be an http(s) URL"));
    }
    let smtp_url = env.get("IDENTITY_SMTP_URL").map(|u| SecretString::from(u.trim().to_owned()));
    if provider == EmailProvider::Smtp && smtp_url.is_none() {
        return Err(error("IDENTITY_SMTP_URL", "is required when IDENTITY_EMAIL_PROVIDER=smtp"));
    }
    Ok(EmailSettings {
        provider,
        from,
        sendgrid_api_key,
        sendgrid_base_url,
        smtp_url,
        timeout: env.positive_duration("IDENTITY_EMAIL_TIMEOUT", Duration::from_secs(10))?,
    })
}
