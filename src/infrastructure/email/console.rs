use async_trait::async_trait;

use crate::domain::ports::{EmailSender, OutgoingEmail, SendEmailError};

/// Prints emails to the log instead of sending them: the zero-setup default, so
/// that a local run shows the verification link. Never use it in production:
/// the log then holds single-use links.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleEmailSender;

#[async_trait]
impl EmailSender for ConsoleEmailSender {
    fn provider(&self) -> &'static str {
        "console"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendEmailError> {
        tracing::info!(
            target: "identity::email::console",
            event_id = %email.event_id,
            to = email.to.as_str(),
            subject = email.subject.as_str(),
            body = email.text_body.as_str(),
            "email (console provider: not sent)"
        );
        Ok(())
    }
}
