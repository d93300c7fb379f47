use async_trait::async_trait;

use crate::{
    application::DeliverEmail,
    domain::ports::{OutboxEvent, OutboxPublisher, PublishError, SendEmailError},
    infrastructure::outbox::payload,
};

/// Delivers outbox events straight to the email provider, inside the server:
/// the zero-setup mode when no message broker is configured.
pub struct InProcessEmailPublisher {
    pub deliver: DeliverEmail,
}

#[async_trait]
impl OutboxPublisher for InProcessEmailPublisher {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn publish(&self, stored: &OutboxEvent) -> Result<(), PublishError> {
        let event = payload::decode(&stored.event_type, stored.payload.as_bytes()).map_err(PublishError::Permanent)?;
        if !event.is_email() {
            // Events for other services need a broker to reach them; without one
            // there is nobody to tell, and nothing to retry.
            return Ok(());
        }
        match self.deliver.execute(&event).await {
            Ok(()) => Ok(()),
            Err(error @ SendEmailError::Transient { .. }) => Err(PublishError::Transient(error.into())),
            Err(error @ SendEmailError::Permanent { .. }) => Err(PublishError::Permanent(error.into())),
        }
    }
}

/// Where user events go without a broker: nowhere. No other service can be
/// listening, so each is settled as published (after a debug line) instead of
/// piling up in the outbox.
pub struct UnheardEvents;

#[async_trait]
impl OutboxPublisher for UnheardEvents {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn publish(&self, stored: &OutboxEvent) -> Result<(), PublishError> {
        tracing::debug!(event_id = %stored.id, event_type = stored.event_type, "no broker: user event not published");
        Ok(())
    }
}
