//! What the mailer agrees to send. Whoever can publish to its queue (a
//! misconfigured service, a leaked broker credential) could otherwise use our
//! sender, and its reputation, to mail any link to anyone.

use secrecy::ExposeSecret;

use super::LinkTemplate;
use crate::domain::{DomainEvent, Email, NewDeviceSignIn, PersonName, UserAgent};

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
            | DomainEvent::PasswordReset(n)
            | DomainEvent::RegistrationAttempted(n)
            | DomainEvent::EmailChangePending(n)
            | DomainEvent::EmailChanged(n)
            | DomainEvent::EmailChangeAttempted(n)
            | DomainEvent::TwoFactorEnabled(n)
            | DomainEvent::TwoFactorDisabled(n) => (&n.email, &n.display_name, None),
            DomainEvent::NewDeviceSignIn(e) => {
                check_device(e)?;
                (&e.notice.email, &e.notice.display_name, None)
            }
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

/// The device a new-device notice describes must be one the server could have
/// written: a user agent within its bounds and a network, not a paragraph of
/// someone else's prose.
fn check_device(event: &NewDeviceSignIn) -> Result<(), String> {
    if let Some(agent) = &event.user_agent
        && UserAgent::parse_optional(agent).ok().flatten().is_none_or(|parsed| parsed.as_str() != agent)
    {
        return Err("the device is not a user agent the service accepts".to_owned());
    }
    if let Some(network) = &event.network
        && !is_coarse_network(network)
    {
        return Err("the network is not an IPv4 /24 or an IPv6 /48".to_owned());
    }
    Ok(())
}

fn is_coarse_network(network: &str) -> bool {
    let parsed = |address: &str| address.parse::<std::net::IpAddr>().ok();
    match network.rsplit_once('/') {
        Some((address, "24")) => parsed(address).is_some_and(|ip| ip.is_ipv4() && address.ends_with(".0")),
        Some((address, "48")) => parsed(address).is_some_and(|ip| ip.is_ipv6()),
        _ => false,
    }
}

#[cfg(test)]
mod device_tests {
    use super::is_coarse_network;

    #[test]
    fn only_networks_the_server_writes_pass_the_device_check() {
        assert!(is_coarse_network("203.0.113.0/24"));
        assert!(is_coarse_network("2001:db8:aaaa::/48"));
        assert!(!is_coarse_network("203.0.113.9/24"));
        assert!(!is_coarse_network("203.0.113.0/16"));
        assert!(!is_coarse_network("click https://evil.example/24"));
    }
}
