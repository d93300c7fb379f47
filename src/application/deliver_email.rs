use std::sync::Arc;

use super::email_rendering;
use crate::domain::{
    DomainEvent,
    ports::{EmailSender, SendEmailError},
};

/// Renders the email an event asks for and hands it to the provider.
pub struct DeliverEmail {
    pub sender: Arc<dyn EmailSender>,
}

impl DeliverEmail {
    /// # Errors
    /// The provider's failure, classified as transient or permanent. A template
    /// that fails to render is permanent: retrying renders it the same way.
    #[tracing::instrument(name = "deliver_email", skip_all, fields(event_id = %event.id(), event_type = event.event_type(), provider = self.sender.provider()))]
    pub async fn execute(&self, event: &DomainEvent) -> Result<(), SendEmailError> {
        let email = tracing::info_span!("render_email", event_type = event.event_type())
            .in_scope(|| email_rendering::render(event))
            .map_err(|error| SendEmailError::Permanent { reason: format!("rendering failed: {error:#}") })?;
        self.sender.send(&email).await?;
        tracing::info!(event_id = %event.id(), provider = self.sender.provider(), "email delivered");
        Ok(())
    }
}
