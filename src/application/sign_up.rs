use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ApplicationError, FieldViolation, PasswordRules, passwords::password_context};
use crate::domain::{
    AccountNotice, DomainEvent, Email, NewPassword, OpaqueToken, PersonName, PersonNames, ResendPolicy, User,
    UserChange, UserEvent, UserId, VerificationEmailRequested,
    ports::{Clock, InsertUserError, NewSingleUseToken, PasswordHasher, RegistrationNotices, UserRepository},
    resend_policy::RESEND_WINDOW,
};

/// A sign-up request as it arrived, before parsing.
#[derive(Default)]
pub struct SignUpInput {
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub first_name: String,
    pub last_name: String,
}

/// A sign-up whose every field is valid.
#[derive(Debug)]
pub struct SignUpCommand {
    pub email: Email,
    pub password: NewPassword,
    pub names: PersonNames,
}

impl SignUpCommand {
    /// Parses every field and reports every problem at once, so that a form can
    /// show them all. The password's strength is judged off the async runtime.
    ///
    /// # Errors
    /// [`ApplicationError::InvalidInput`] listing each invalid field;
    /// `Saturated` when the strength meter is.
    pub async fn parse(input: SignUpInput, rules: &PasswordRules) -> Result<Self, ApplicationError> {
        let mut violations = Vec::new();
        let email = Email::parse(&input.email).map_err(|e| violations.push(FieldViolation::new("email", e))).ok();
        let mut name = |field: &'static str, raw: &str| {
            PersonName::parse_optional(raw).map_err(|e| violations.push(FieldViolation::new(field, e))).ok().flatten()
        };
        let names = PersonNames {
            display_name: name("display_name", &input.display_name),
            first_name: name("first_name", &input.first_name),
            last_name: name("last_name", &input.last_name),
        };
        // Words the user is likely to build a password from make it guessable.
        let name_of = |n: &Option<PersonName>| n.as_ref().map(|n| n.as_str().to_owned());
        let names_given = [name_of(&names.display_name), name_of(&names.first_name), name_of(&names.last_name)];
        let context = password_context(email.as_ref(), &names_given.iter().map(Option::as_deref).collect::<Vec<_>>());
        // The address as typed counts too, in case it did not parse.
        let mut user_inputs: Vec<String> = vec![input.email.trim().to_owned()];
        user_inputs.extend(context);
        let password = rules
            .check(input.password, &user_inputs)
            .await?
            .map_err(|e| violations.push(FieldViolation::new("password", e)))
            .ok();
        match (email, password) {
            (Some(email), Some(password)) if violations.is_empty() => Ok(Self { email, password, names }),
            _ => Err(ApplicationError::InvalidInput(violations)),
        }
    }
}

/// Builds the links of single-use tokens from a URL template with a `{token}`
/// placeholder (`IDENTITY_VERIFICATION_URL`, `IDENTITY_PASSWORD_RESET_URL`).
#[derive(Debug, Clone)]
pub struct LinkTemplate(String);

impl LinkTemplate {
    pub const PLACEHOLDER: &'static str = "{token}";

    /// # Errors
    /// The template lacks the `{token}` placeholder.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.contains(Self::PLACEHOLDER) {
            Ok(Self(template.to_owned()))
        } else {
            Err(format!("must contain the placeholder {}", Self::PLACEHOLDER))
        }
    }

    pub fn link_for(&self, token: &OpaqueToken) -> SecretString {
        // Tokens are base64url: safe in a URL as they are.
        SecretString::from(self.0.replace(Self::PLACEHOLDER, token.expose()))
    }

    /// Whether `link` is exactly what [`Self::link_for`] makes of some token:
    /// same scheme, host, path and query, a well-formed token in place of the
    /// placeholder. The mailer sends no link that fails this.
    pub fn matches(&self, link: &str) -> bool {
        let Some(start) = self.0.find(Self::PLACEHOLDER) else { return false };
        let candidate = link.get(start..start + crate::domain::opaque_token::ENCODED_LENGTH);
        match candidate.map(OpaqueToken::parse) {
            Some(Ok(token)) => {
                use secrecy::ExposeSecret;
                self.link_for(&token).expose_secret() == link
            }
            _ => false,
        }
    }
}

/// Creates a fresh verification token and the event that emails it.
pub(crate) fn new_verification(
    user: &User,
    links: &LinkTemplate,
    ttl: Duration,
    now: OffsetDateTime,
) -> (NewSingleUseToken, DomainEvent) {
    let token = OpaqueToken::generate();
    let expires_at = now + ttl;
    let record = NewSingleUseToken { hash: token.hash(), created_at: now, expires_at, email_change: None };
    let event = DomainEvent::VerificationEmailRequested(VerificationEmailRequested {
        event_id: Uuid::now_v7(),
        user_id: user.id(),
        email: user.email().clone(),
        display_name: user.greeting_name(),
        verification_link: links.link_for(&token),
        expires_at,
        occurred_at: now,
    });
    (record, event)
}

/// Registers a user pending verification and records the verification email.
pub struct SignUp {
    pub users: Arc<dyn UserRepository>,
    pub notices: Arc<dyn RegistrationNotices>,
    /// Caps the owner notices of enumeration-safe mode like verification
    /// resends: each taken-address sign-up would otherwise mail the owner.
    pub notice_policy: ResendPolicy,
    pub hasher: Arc<dyn PasswordHasher>,
    pub clock: Arc<dyn Clock>,
    pub links: LinkTemplate,
    pub verification_ttl: Duration,
    /// Answer a taken address like a fresh sign-up, and tell its owner by email.
    pub is_enumeration_safe: bool,
}

impl SignUp {
    /// # Errors
    /// [`ApplicationError::EmailTaken`], saturation, storage failures.
    #[tracing::instrument(name = "sign_up", skip_all, fields(user_id))]
    pub async fn execute(&self, command: SignUpCommand) -> Result<User, ApplicationError> {
        // Cheap early answer for the common duplicate; the unique index still
        // decides races between concurrent sign-ups.
        if let Some(owner) = self.users.find_by_email(&command.email).await? {
            return self.taken(owner, command).await;
        }
        let password_hash = self.hasher.hash(&command.password).await?;
        let now = self.clock.now();
        let user = User::sign_up(UserId::new_v7(), command.email.clone(), command.names.clone(), now);
        let (token, event) = new_verification(&user, &self.links, self.verification_ttl, now);
        let signed_up = UserEvent::new(user.id(), now, UserChange::SignedUp { email: user.email().clone() });
        let events = [event, signed_up.into()];
        match self.users.insert_with_verification(&user, &password_hash, &token, &events).await {
            Ok(()) => {}
            Err(InsertUserError::DuplicateEmail) => {
                let owner = self.users.find_by_email(&command.email).await?.ok_or(ApplicationError::EmailTaken)?;
                return self.taken(owner, command).await;
            }
            Err(error) => return Err(error.into()),
        }
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        tracing::info!(user_id = %user.id(), event_id = %events[0].id(), "user signed up");
        Ok(user)
    }

    /// The address belongs to `owner`. Normally that is ALREADY_EXISTS; in
    /// enumeration-safe mode the caller gets what a fresh sign-up gets (a pending
    /// user, after the same hashing work) and the owner gets an email instead,
    /// within the notice cap. The answer is the same whether or not it was sent.
    async fn taken(&self, owner: User, command: SignUpCommand) -> Result<User, ApplicationError> {
        if !self.is_enumeration_safe {
            return Err(ApplicationError::EmailTaken);
        }
        let _same_cost = self.hasher.hash(&command.password).await?;
        let now = self.clock.now();
        let history = self.notices.history(owner.id(), now - RESEND_WINDOW).await?;
        if !self.notice_policy.allows(history, now) {
            tracing::info!(user_id = %owner.id(), "sign-up with a registered address; owner not notified: rate limited");
        } else {
            let event = DomainEvent::RegistrationAttempted(AccountNotice {
                event_id: Uuid::now_v7(),
                user_id: owner.id(),
                email: owner.email().clone(),
                display_name: owner.greeting_name(),
                occurred_at: now,
            });
            if self.notices.record(owner.id(), history.last_sent_at, &event).await? {
                tracing::info!(user_id = %owner.id(), "sign-up with a registered address; owner notified");
            } else {
                tracing::info!(user_id = %owner.id(), "sign-up with a registered address; a concurrent notice won");
            }
        }
        Ok(User::sign_up(UserId::new_v7(), command.email, command.names, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{application::password_rules::fake::LengthMeter, domain::PasswordPolicy};

    fn rules() -> PasswordRules {
        PasswordRules { policy: PasswordPolicy { min_length: 12 }, meter: Arc::new(LengthMeter) }
    }

    fn input(email: &str, password: &str) -> SignUpInput {
        SignUpInput { email: email.into(), password: password.into(), ..SignUpInput::default() }
    }

    #[tokio::test]
    async fn every_invalid_field_is_reported_at_once() {
        let raw = SignUpInput { first_name: "a\u{0007}".into(), ..input("not-an-email", "short") };
        let Err(ApplicationError::InvalidInput(violations)) = SignUpCommand::parse(raw, &rules()).await else {
            panic!("expected invalid input");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["email", "first_name", "password"]);
    }

    #[tokio::test]
    async fn a_password_made_of_the_email_is_refused() {
        let result = SignUpCommand::parse(input("zanzibar.quokka@example.com", "zanzibarquokka"), &rules()).await;
        assert!(matches!(result, Err(ApplicationError::InvalidInput(v)) if v[0].field == "password"));
    }

    #[tokio::test]
    async fn valid_input_parses() {
        let command = SignUpCommand::parse(input(" Ada@Example.com", "plum-orbit-canyon-47"), &rules()).await.unwrap();
        assert_eq!(command.email.as_str(), "ada@example.com");
    }

    #[test]
    fn only_links_made_from_the_template_match_it() {
        let template = LinkTemplate::parse("https://app.example/verify?token={token}").unwrap();
        let token = OpaqueToken::generate();
        let t = token.expose();
        use secrecy::ExposeSecret;
        assert!(template.matches(template.link_for(&token).expose_secret()));
        for foreign in [
            format!("https://evil.example/verify?token={t}"),
            format!("http://app.example/verify?token={t}"),
            format!("https://app.example.evil.example/verify?token={t}"),
            format!("https://app.example/verify?token={t}&next=https://evil.example"),
            format!("https://app.example/other?token={t}"),
            "https://app.example/verify?token=short".to_owned(),
            format!("https://app.example/verify?token={}", &t[..42]),
            String::new(),
        ] {
            assert!(!template.matches(&foreign), "{foreign}");
        }
    }

    #[test]
    fn link_templates_need_the_placeholder() {
        assert!(LinkTemplate::parse("https://example.com/verify").is_err());
        let template = LinkTemplate::parse("https://example.com/verify?t={token}").unwrap();
        let token = OpaqueToken::generate();
        use secrecy::ExposeSecret;
        assert_eq!(
            template.link_for(&token).expose_secret(),
            &format!("https://example.com/verify?t={}", token.expose())
        );
    }
}
