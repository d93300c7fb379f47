//! Turns domain events into emails. Templates live in `templates/` and are
//! checked at compile time by askama: a missing variable fails the build.

use askama::Template;
use secrecy::ExposeSecret;
use time::{OffsetDateTime, format_description::well_known::Rfc2822};

use crate::domain::{
    DomainEvent, NewDeviceSignIn, PasswordResetRequested, VerificationEmailRequested, ports::OutgoingEmail,
};

#[derive(Template)]
#[template(path = "verification_email.txt")]
struct VerificationText<'a> {
    username: &'a str,
    verification_link: &'a str,
    expires_at: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "verification_email.html")]
struct VerificationHtml<'a> {
    username: &'a str,
    verification_link: &'a str,
    expires_at: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "password_reset.txt")]
struct ResetText<'a> {
    username: &'a str,
    reset_password_link: &'a str,
    expires_at: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "password_reset.html")]
struct ResetHtml<'a> {
    username: &'a str,
    reset_password_link: &'a str,
    expires_at: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "password_changed.txt")]
struct ChangedText<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "password_changed.html")]
struct ChangedHtml<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "two_factor_enabled.txt")]
struct TwoFactorOnText<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "two_factor_enabled.html")]
struct TwoFactorOnHtml<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "two_factor_disabled.txt")]
struct TwoFactorOffText<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "two_factor_disabled.html")]
struct TwoFactorOffHtml<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "registration_attempted.txt")]
struct AttemptText<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "registration_attempted.html")]
struct AttemptHtml<'a> {
    username: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "email_change_requested.txt")]
struct ChangeRequestedText<'a> {
    username: &'a str,
    confirmation_link: &'a str,
    expires_at: &'a str,
    date_time: &'a str,
}

#[derive(Template)]
#[template(path = "email_change_requested.html")]
struct ChangeRequestedHtml<'a> {
    username: &'a str,
    confirmation_link: &'a str,
    expires_at: &'a str,
    date_time: &'a str,
}

/// A notice's two bodies, from its templates.
macro_rules! notice_templates {
    ($text:ident, $html:ident, $txt_path:literal, $html_path:literal) => {
        #[derive(Template)]
        #[template(path = $txt_path)]
        struct $text<'a> {
            username: &'a str,
            date_time: &'a str,
        }

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> {
            username: &'a str,
            date_time: &'a str,
        }
    };
}

notice_templates!(
    PasswordResetText,
    PasswordResetHtml,
    "password_reset_completed.txt",
    "password_reset_completed.html"
);
notice_templates!(ChangePendingText, ChangePendingHtml, "email_change_pending.txt", "email_change_pending.html");
notice_templates!(EmailChangedText, EmailChangedHtml, "email_changed.txt", "email_changed.html");
notice_templates!(
    ChangeAttemptedText,
    ChangeAttemptedHtml,
    "email_change_attempted.txt",
    "email_change_attempted.html"
);

#[derive(Template)]
#[template(path = "new_device_sign_in.txt")]
struct NewDeviceText<'a> {
    username: &'a str,
    date_time: &'a str,
    device: &'a str,
    network: &'a str,
}

#[derive(Template)]
#[template(path = "new_device_sign_in.html")]
struct NewDeviceHtml<'a> {
    username: &'a str,
    date_time: &'a str,
    device: &'a str,
    network: &'a str,
}

fn render_new_device(event: &NewDeviceSignIn) -> anyhow::Result<OutgoingEmail> {
    let notice = &event.notice;
    let date_time = human_time(notice.occurred_at);
    let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
    let device = event.user_agent.as_deref().unwrap_or("unknown");
    let network = event.network.as_deref().unwrap_or("unknown");
    Ok(OutgoingEmail {
        event_id: notice.event_id,
        to: notice.email.clone(),
        subject: "A sign-in from a new device".to_owned(),
        text_body: NewDeviceText { username, date_time, device, network }.render()?,
        html_body: NewDeviceHtml { username, date_time, device, network }.render()?,
    })
}

/// # Errors
/// A template failed to render (a bug, not bad data), or the event is not one
/// that becomes an email.
pub fn render(event: &DomainEvent) -> anyhow::Result<OutgoingEmail> {
    match event {
        DomainEvent::VerificationEmailRequested(event) => render_verification(event),
        DomainEvent::PasswordResetRequested(event) => render_reset(event),
        DomainEvent::NewDeviceSignIn(event) => render_new_device(event),
        DomainEvent::PasswordChanged(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Your password was changed".to_owned(),
                text_body: ChangedText { username, date_time }.render()?,
                html_body: ChangedHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::RegistrationAttempted(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Someone tried to sign up with your email address".to_owned(),
                text_body: AttemptText { username, date_time }.render()?,
                html_body: AttemptHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::TwoFactorEnabled(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Two-factor login was turned on".to_owned(),
                text_body: TwoFactorOnText { username, date_time }.render()?,
                html_body: TwoFactorOnHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::TwoFactorDisabled(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Two-factor login was turned off".to_owned(),
                text_body: TwoFactorOffText { username, date_time }.render()?,
                html_body: TwoFactorOffHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::EmailChangeRequested(event) => {
            let expires_at = human_time(event.expires_at);
            let date_time = human_time(event.occurred_at);
            let link = event.confirmation_link.expose_secret();
            let (username, expires_at, date_time) =
                (event.display_name.as_str(), expires_at.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: event.event_id,
                to: event.email.clone(),
                subject: "Confirm your new email address".to_owned(),
                text_body: ChangeRequestedText { username, confirmation_link: link, expires_at, date_time }.render()?,
                html_body: ChangeRequestedHtml { username, confirmation_link: link, expires_at, date_time }.render()?,
            })
        }
        DomainEvent::PasswordReset(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Your password was reset".to_owned(),
                text_body: PasswordResetText { username, date_time }.render()?,
                html_body: PasswordResetHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::EmailChangePending(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Your email address is being changed".to_owned(),
                text_body: ChangePendingText { username, date_time }.render()?,
                html_body: ChangePendingHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::EmailChanged(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Your email address was changed".to_owned(),
                text_body: EmailChangedText { username, date_time }.render()?,
                html_body: EmailChangedHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::EmailChangeAttempted(notice) => {
            let date_time = human_time(notice.occurred_at);
            let (username, date_time) = (notice.display_name.as_str(), date_time.as_str());
            Ok(OutgoingEmail {
                event_id: notice.event_id,
                to: notice.email.clone(),
                subject: "Someone tried to use your email address".to_owned(),
                text_body: ChangeAttemptedText { username, date_time }.render()?,
                html_body: ChangeAttemptedHtml { username, date_time }.render()?,
            })
        }
        DomainEvent::User(_) => anyhow::bail!("{} is not an email event", event.event_type()),
    }
}

fn render_reset(event: &PasswordResetRequested) -> anyhow::Result<OutgoingEmail> {
    let expires_at = human_time(event.expires_at);
    let date_time = human_time(event.occurred_at);
    let link = event.reset_link.expose_secret();
    let (username, expires_at, date_time) = (event.display_name.as_str(), expires_at.as_str(), date_time.as_str());
    Ok(OutgoingEmail {
        event_id: event.event_id,
        to: event.email.clone(),
        subject: "Reset your password".to_owned(),
        text_body: ResetText { username, reset_password_link: link, expires_at, date_time }.render()?,
        html_body: ResetHtml { username, reset_password_link: link, expires_at, date_time }.render()?,
    })
}

fn render_verification(event: &VerificationEmailRequested) -> anyhow::Result<OutgoingEmail> {
    let expires_at = human_time(event.expires_at);
    let date_time = human_time(event.occurred_at);
    let link = event.verification_link.expose_secret();
    let text = VerificationText {
        username: &event.display_name,
        verification_link: link,
        expires_at: &expires_at,
        date_time: &date_time,
    };
    let html = VerificationHtml {
        username: &event.display_name,
        verification_link: link,
        expires_at: &expires_at,
        date_time: &date_time,
    };
    Ok(OutgoingEmail {
        event_id: event.event_id,
        to: event.email.clone(),
        subject: "Confirm your email address".to_owned(),
        text_body: text.render()?,
        html_body: html.render()?,
    })
}

fn human_time(at: OffsetDateTime) -> String {
    at.format(&Rfc2822).unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, UserId};
    use secrecy::SecretString;
    use time::macros::datetime;

    fn event(name: &str) -> DomainEvent {
        DomainEvent::VerificationEmailRequested(VerificationEmailRequested {
            event_id: uuid::Uuid::now_v7(),
            user_id: UserId::new_v7(),
            email: Email::parse("ada@example.com").unwrap(),
            display_name: name.to_owned(),
            verification_link: SecretString::from("https://app.example/verify?token=abc_-123"),
            expires_at: datetime!(2026-01-02 10:00 UTC),
            occurred_at: datetime!(2026-01-01 10:00 UTC),
        })
    }

    #[test]
    fn both_bodies_carry_the_link_and_the_name() {
        let email = render(&event("Ada")).unwrap();
        assert_eq!(email.to.as_str(), "ada@example.com");
        for body in [&email.text_body, &email.html_body] {
            assert!(body.contains("https://app.example/verify?token=abc_-123"), "{body}");
            assert!(body.contains("Ada"));
            assert!(body.contains("Fri, 02 Jan 2026 10:00:00 +0000"), "{body}");
        }
    }

    #[test]
    fn names_are_escaped_in_html_but_not_in_text() {
        let email = render(&event("<script>x</script>")).unwrap();
        assert!(!email.html_body.contains("<script>"));
        assert!(email.text_body.contains("<script>x</script>"));
    }
}
