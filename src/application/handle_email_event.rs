use std::{sync::Arc, time::Duration};

use rand::Rng;

use super::{DeliverEmail, ExpectedEmails};
use crate::domain::{
    DomainEvent, durations,
    ports::{Clock, DeliveryLog, SendEmailError},
};

/// What the mailer does with a message once it tried to deliver its email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The provider accepted the email (now or before): acknowledge the message.
    Delivered { was_duplicate: bool },
    /// A transient failure: deliver again after `delay`.
    RetryLater { delay: Duration, reason: String },
    /// Retrying cannot help, or the attempts are used up: park it for an operator.
    DeadLetter { reason: String },
}

/// Exponential backoff with jitter, bounded in attempts and delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: the provider's `Retry-After` when
    /// it gave one, else `base × 2^(attempt-1)` with "equal jitter" (half fixed,
    /// half random), so that a burst of failures does not retry in lockstep.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let exponential = durations::doubled(self.base_delay, attempt.saturating_sub(1), self.max_delay);
        let half = exponential / 2;
        let jitter_ms = rand::rng().random_range(0..=durations::millis(half));
        half + Duration::from_millis(jitter_ms)
    }
}

/// Delivers an event's email at most once per event id, as far as the
/// provider's acceptance can be recorded: a redelivered message whose event is
/// already in the delivery log is acknowledged without sending.
pub struct HandleEmailEvent {
    pub log: Arc<dyn DeliveryLog>,
    pub deliver: DeliverEmail,
    /// Checked before anything else: a message that fails is never sent.
    pub expected: ExpectedEmails,
    pub clock: Arc<dyn Clock>,
    pub retry: RetryPolicy,
}

impl HandleEmailEvent {
    /// `attempt` counts from 1.
    pub async fn execute(&self, event: &DomainEvent, attempt: u32) -> Disposition {
        if let Err(reason) = self.expected.check(event) {
            tracing::error!(event_id = %event.id(), reason = reason.as_str(), "refusing to send an unexpected email; dead-lettering");
            return Disposition::DeadLetter { reason: format!("refused: {reason}") };
        }
        match self.log.has_delivered(event.id()).await {
            Ok(true) => {
                tracing::info!(event_id = %event.id(), "email already delivered; skipping the duplicate message");
                return Disposition::Delivered { was_duplicate: true };
            }
            Ok(false) => {}
            Err(error) => {
                return self.retry_or_give_up(
                    attempt,
                    None,
                    format!("delivery log unavailable: {:#}", anyhow::Error::new(error)),
                );
            }
        }
        match self.deliver.execute(event).await {
            Ok(()) => {
                let provider = self.deliver.sender.provider();
                if let Err(error) =
                    self.log.record_delivered(event.id(), event.event_type(), provider, self.clock.now()).await
                {
                    // The email is out; failing now would send it again.
                    tracing::warn!(
                        event_id = %event.id(),
                        error = format!("{:#}", anyhow::Error::new(error)),
                        "email delivered but not recorded; a redelivery could send it twice"
                    );
                }
                Disposition::Delivered { was_duplicate: false }
            }
            Err(SendEmailError::Permanent { reason }) => {
                tracing::error!(event_id = %event.id(), reason = reason.as_str(), "email refused by the provider; dead-lettering");
                Disposition::DeadLetter { reason }
            }
            Err(SendEmailError::Transient { reason, retry_after }) => {
                self.retry_or_give_up(attempt, retry_after, reason)
            }
        }
    }

    fn retry_or_give_up(&self, attempt: u32, retry_after: Option<Duration>, reason: String) -> Disposition {
        if attempt >= self.retry.max_attempts {
            tracing::error!(
                attempt,
                reason = reason.as_str(),
                "email delivery failed on the last attempt; dead-lettering"
            );
            return Disposition::DeadLetter { reason: format!("gave up after {attempt} attempts: {reason}") };
        }
        let delay = self.retry.delay_after(attempt, retry_after);
        tracing::warn!(
            attempt,
            retry_in_ms = durations::millis(delay),
            reason = reason.as_str(),
            "email delivery failed; will retry"
        );
        Disposition::RetryLater { delay, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use secrecy::SecretString;
    use time::{OffsetDateTime, macros::datetime};
    use uuid::Uuid;

    use crate::{
        application::LinkTemplate,
        domain::{
            AccountNotice, Email, OpaqueToken, PasswordResetRequested, UserId, VerificationEmailRequested,
            ports::{EmailSender, OutgoingEmail, RepositoryError},
        },
    };

    const POLICY: RetryPolicy =
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60) };

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> OffsetDateTime {
            datetime!(2026-01-01 0:00 UTC)
        }
    }

    #[derive(Default)]
    struct MemoryLog(Mutex<Vec<Uuid>>);
    #[async_trait]
    impl DeliveryLog for MemoryLog {
        async fn has_delivered(&self, event_id: Uuid) -> Result<bool, RepositoryError> {
            Ok(self.0.lock().unwrap().contains(&event_id))
        }
        async fn record_delivered(&self, id: Uuid, _: &str, _: &str, _: OffsetDateTime) -> Result<(), RepositoryError> {
            self.0.lock().unwrap().push(id);
            Ok(())
        }
    }

    /// Answers with the scripted results in order, then succeeds.
    struct ScriptedSender(Mutex<Vec<Result<(), SendEmailError>>>, Mutex<u32>);
    #[async_trait]
    impl EmailSender for ScriptedSender {
        fn provider(&self) -> &'static str {
            "scripted"
        }
        async fn send(&self, _: &OutgoingEmail) -> Result<(), SendEmailError> {
            *self.1.lock().unwrap() += 1;
            let mut script = self.0.lock().unwrap();
            if script.is_empty() { Ok(()) } else { script.remove(0) }
        }
    }

    const VERIFY: &str = "https://app.example/verify?token={token}";
    const RESET: &str = "https://app.example/reset?token={token}";

    fn link(template: &str) -> SecretString {
        LinkTemplate::parse(template).unwrap().link_for(&OpaqueToken::generate())
    }

    fn verification(to: Email, display_name: &str, link: SecretString) -> DomainEvent {
        DomainEvent::VerificationEmailRequested(VerificationEmailRequested {
            event_id: Uuid::now_v7(),
            user_id: UserId::new_v7(),
            email: to,
            display_name: display_name.into(),
            verification_link: link,
            expires_at: datetime!(2026-01-02 0:00 UTC),
            occurred_at: datetime!(2026-01-01 0:00 UTC),
        })
    }

    fn reset(link: SecretString) -> DomainEvent {
        DomainEvent::PasswordResetRequested(PasswordResetRequested {
            event_id: Uuid::now_v7(),
            user_id: UserId::new_v7(),
            email: Email::parse("ada@example.com").unwrap(),
            display_name: "Ada".into(),
            reset_link: link,
            expires_at: datetime!(2026-01-02 0:00 UTC),
            occurred_at: datetime!(2026-01-01 0:00 UTC),
        })
    }

    fn event() -> DomainEvent {
        verification(Email::parse("ada@example.com").unwrap(), "Ada", link(VERIFY))
    }

    fn handler(script: Vec<Result<(), SendEmailError>>) -> (HandleEmailEvent, Arc<ScriptedSender>) {
        let sender = Arc::new(ScriptedSender(Mutex::new(script), Mutex::new(0)));
        let handler = HandleEmailEvent {
            log: Arc::new(MemoryLog::default()),
            deliver: DeliverEmail { sender: Arc::clone(&sender) as Arc<dyn EmailSender> },
            expected: ExpectedEmails {
                verification_links: LinkTemplate::parse(VERIFY).unwrap(),
                reset_links: LinkTemplate::parse(RESET).unwrap(),
                email_change_links: LinkTemplate::parse("https://app.example/change?t={token}").unwrap(),
            },
            clock: Arc::new(FixedClock),
            retry: POLICY,
        };
        (handler, sender)
    }

    fn transient(retry_after: Option<Duration>) -> Result<(), SendEmailError> {
        Err(SendEmailError::Transient { reason: "503".into(), retry_after })
    }

    #[tokio::test]
    async fn a_second_delivery_of_one_event_sends_nothing() {
        let (handler, sender) = handler(vec![]);
        let event = event();
        assert_eq!(handler.execute(&event, 1).await, Disposition::Delivered { was_duplicate: false });
        assert_eq!(handler.execute(&event, 1).await, Disposition::Delivered { was_duplicate: true });
        assert_eq!(*sender.1.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn transient_failures_retry_until_the_last_attempt() {
        let (handler, _) = handler(vec![transient(None), transient(None), transient(None)]);
        let event = event();
        assert!(matches!(handler.execute(&event, 1).await, Disposition::RetryLater { .. }));
        assert!(matches!(handler.execute(&event, 2).await, Disposition::RetryLater { .. }));
        assert!(
            matches!(handler.execute(&event, 3).await, Disposition::DeadLetter { reason } if reason.contains("3 attempts"))
        );
    }

    #[tokio::test]
    async fn the_providers_retry_after_is_honoured() {
        let (handler, _) = handler(vec![transient(Some(Duration::from_secs(7)))]);
        let disposition = handler.execute(&event(), 1).await;
        assert_eq!(disposition, Disposition::RetryLater { delay: Duration::from_secs(7), reason: "503".into() });
    }

    #[tokio::test]
    async fn permanent_failures_are_dead_lettered_at_once() {
        let (handler, sender) = handler(vec![Err(SendEmailError::Permanent { reason: "400 bad request".into() })]);
        assert!(matches!(handler.execute(&event(), 1).await, Disposition::DeadLetter { .. }));
        assert_eq!(*sender.1.lock().unwrap(), 1);
    }

    fn is_refused(disposition: &Disposition, because: &str) -> bool {
        matches!(disposition, Disposition::DeadLetter { reason } if reason.starts_with("refused:") && reason.contains(because))
    }

    #[tokio::test]
    async fn links_not_made_from_the_configured_templates_are_refused_unsent() {
        let (handler, sender) = handler(vec![]);
        let ada = || Email::parse("ada@example.com").unwrap();
        let token = OpaqueToken::generate();
        let t = token.expose();
        let forged = [
            verification(ada(), "Ada", SecretString::from(format!("https://evil.example/verify?token={t}"))),
            verification(ada(), "Ada", SecretString::from(format!("http://app.example/verify?token={t}"))),
            verification(
                ada(),
                "Ada",
                SecretString::from(format!("https://app.example/verify?token={t}#@evil.example")),
            ),
            // A reset link in a verification email, and the other way round.
            verification(ada(), "Ada", link(RESET)),
            reset(link(VERIFY)),
            reset(SecretString::from("https://app.example/reset?token=not-a-token")),
        ];
        for event in &forged {
            let disposition = handler.execute(event, 1).await;
            assert!(is_refused(&disposition, "link was not made from"), "{disposition:?}");
            if let Disposition::DeadLetter { reason } = &disposition {
                assert!(!reason.contains(t), "the reason must not carry the token");
            }
        }
        assert_eq!(*sender.1.lock().unwrap(), 0, "nothing was sent");
        assert_eq!(handler.execute(&reset(link(RESET)), 1).await, Disposition::Delivered { was_duplicate: false });
    }

    #[tokio::test]
    async fn recipients_and_greetings_the_service_would_not_accept_are_refused_unsent() {
        let (handler, sender) = handler(vec![]);
        // Recipients are canonical by construction here; the integration test
        // forges a non-canonical one on the wire.
        let ada = Email::parse("ada@example.com").unwrap();
        let long_pitch = "Buy now! ".repeat(20);
        let notice = |display_name: &str| {
            DomainEvent::RegistrationAttempted(AccountNotice {
                event_id: Uuid::now_v7(),
                user_id: UserId::new_v7(),
                email: ada.clone(),
                display_name: display_name.to_owned(),
                occurred_at: datetime!(2026-01-01 0:00 UTC),
            })
        };
        for event in [notice(&long_pitch), notice("Ada\u{0007}"), verification(ada.clone(), " padded ", link(VERIFY))] {
            let disposition = handler.execute(&event, 1).await;
            assert!(is_refused(&disposition, "greeting"), "{disposition:?}");
        }
        assert_eq!(*sender.1.lock().unwrap(), 0, "nothing was sent");
        // The address's local part is how unverified users are greeted.
        assert_eq!(handler.execute(&notice("ada"), 1).await, Disposition::Delivered { was_duplicate: false });
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        for attempt in 1..=10 {
            let delay = POLICY.delay_after(attempt, None);
            let full = Duration::from_secs(1 << (attempt - 1)).min(POLICY.max_delay);
            assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?}");
        }
        assert_eq!(POLICY.delay_after(1, Some(Duration::from_secs(3600))), POLICY.max_delay);
    }
}
