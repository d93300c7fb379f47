//! What the mailer agrees to send. Whoever can publish to its queue (a
//! misconfigured service, a leaked broker credential) could otherwise use our
//! sender, and its reputation, to mail any link to anyone.

use secrecy::ExposeSecret;

use super::LinkTemplate;
use crate::domain::{DomainEvent, Email, PersonName};

/// The links the server makes (`IDENTITY_VERIFICATION_URL`,
/// `IDENTITY_PASSWORD_RESET_URL`, `IDENTITY_EMAIL_CHANGE_URL`), read from the
/// same configuration.
#[derive(Debug, Clone)]
pub struct ExpectedEmails {
    pub verification_links: LinkTemplate,
    pub reset_links: LinkTemplate,
    pub email_change_links: LinkTemplate,
}

impl ExpectedEmails {
    /// # Errors
    /// Why the event's email must not go out. The reason names the rule, never
    /// the link (it may carry a live token).
    pub fn check(&self, event: &DomainEvent) -> Result<(), String> {
        let (to, greeting, link) = match event {
            DomainEvent::VerificationEmailRequested(e) => (
                &e.email,
                &e.display_name,
                Some((&self.verification_links, &e.verification_link, "IDENTITY_VERIFICATION_URL")),
            ),
            DomainEvent::PasswordResetRequested(e) => {
                (&e.email, &e.display_name, Some((&self.reset_links, &e.reset_link, "IDENTITY_PASSWORD_RESET_URL")))
            }
            DomainEvent::EmailChangeRequested(e) => (
                &e.email,
                &e.display_name,
                Some((&self.email_change_links, &e.confirmation_link, "IDENTITY_EMAIL_CHANGE_URL")),
            ),
            DomainEvent::PasswordChanged(n)
            | DomainEvent::RegistrationAttempted(n)
            | DomainEvent::EmailChangePending(n)
            | DomainEvent::EmailChanged(n)
            | DomainEvent::EmailChangeAttempted(n)
            | DomainEvent::TwoFactorEnabled(n)
            | DomainEvent::TwoFactorDisabled(n) => (&n.email, &n.display_name, None),
            DomainEvent::User(_) => return Err(format!("{} is not an email event", event.event_type())),
        };
        if Email::parse(to.as_str()).ok().as_ref() != Some(to) {
            return Err("the recipient is not an address the service accepts".to_owned());
        }
        let is_stored_name =
            PersonName::parse_optional(greeting).ok().flatten().is_some_and(|name| name.as_str() == greeting.as_str());
        if greeting != to.local_part() && !is_stored_name {
            return Err("the greeting is neither a name the service accepts nor the recipient's address".to_owned());
        }
        if let Some((template, link, variable)) = link
            && !template.matches(link.expose_secret())
        {
            return Err(format!("the link was not made from {variable}"));
        }
        Ok(())
    }
}
