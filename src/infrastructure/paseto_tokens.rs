//! Access tokens as PASETO v4.public (Ed25519), via pasetors.
//!
//! The footer names the signing key by its PASERK id (`{"kid":"k4.pid..."}`);
//! verification looks that id up in our own key set only, never anywhere the
//! token points to. Claims are checked against the injected clock with a small
//! leeway for clock skew between services.

use std::time::Duration;

use anyhow::Context;
use pasetors::{
    Public,
    claims::Claims,
    footer::Footer,
    keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate},
    paserk::{FormatAsPaserk, Id},
    token::UntrustedToken,
    version4::{PublicToken, V4},
};
use secrecy::{ExposeSecret, SecretString};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use crate::domain::{
    AccessGrant, AccessTokenClaims, AuthMethods, IssuedToken, UserId,
    ports::{AccessTokenIssuer, InvalidAccessToken, PublicKeyInfo},
};

/// Far above any token we issue; refusing longer input early bounds the work.
const MAX_TOKEN_LENGTH: usize = 4096;

pub struct PasetoSettings {
    /// PASERK `k4.secret.`; `None` generates an ephemeral key (tokens die with the process).
    pub secret_key: Option<SecretString>,
    /// PASERK `k4.public.` keys of retired signing keys that still verify.
    pub previous_public_keys: Vec<String>,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub leeway: Duration,
}

struct VerifyingKey {
    kid: String,
    paserk: String,
    key: AsymmetricPublicKey<V4>,
}

pub struct PasetoTokens {
    signing_key: AsymmetricSecretKey<V4>,
    signing_kid: Id,
    /// The signing key's public half first, then the previous keys.
    verifying_keys: Vec<VerifyingKey>,
    issuer: String,
    audience: String,
    ttl: Duration,
    leeway: Duration,
}

fn paserk(key: &impl FormatAsPaserk) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = key.fmt(&mut out);
    out
}

impl PasetoTokens {
    /// Also returns whether the key is ephemeral, so that start-up can warn.
    ///
    /// # Errors
    /// A key that is not valid PASERK of the right version and purpose.
    pub fn new(settings: PasetoSettings) -> anyhow::Result<(Self, bool)> {
        let is_ephemeral = settings.secret_key.is_none();
        let signing_key = match &settings.secret_key {
            Some(paserk) => AsymmetricSecretKey::<V4>::try_from(paserk.expose_secret().trim())
                .map_err(|_| anyhow::anyhow!("IDENTITY_TOKEN_SECRET_KEY is not a PASERK k4.secret key"))?,
            None => AsymmetricKeyPair::<V4>::generate().context("generating an ephemeral signing key")?.secret,
        };
        let public = AsymmetricPublicKey::<V4>::try_from(&signing_key).context("deriving the public key")?;
        let signing_kid = Id::from(&public);
        let mut verifying_keys = vec![VerifyingKey { kid: paserk(&signing_kid), paserk: paserk(&public), key: public }];
        for raw in &settings.previous_public_keys {
            let key = AsymmetricPublicKey::<V4>::try_from(raw.trim()).map_err(|_| {
                anyhow::anyhow!("IDENTITY_PREVIOUS_PUBLIC_KEYS holds a value that is not a PASERK k4.public key")
            })?;
            let kid = paserk(&Id::from(&key));
            if verifying_keys.iter().all(|k| k.kid != kid) {
                verifying_keys.push(VerifyingKey { kid, paserk: paserk(&key), key });
            }
        }
        Ok((
            Self {
                signing_key,
                signing_kid,
                verifying_keys,
                issuer: settings.issuer,
                audience: settings.audience,
                ttl: settings.access_token_ttl,
                leeway: settings.leeway,
            },
            is_ephemeral,
        ))
    }

    /// A fresh PASERK `k4.secret.` key, for `identity-server generate-key`.
    ///
    /// # Errors
    /// The system random source failed.
    pub fn generate_secret_key() -> anyhow::Result<(SecretString, String)> {
        let pair = AsymmetricKeyPair::<V4>::generate().context("generating a key pair")?;
        Ok((SecretString::from(paserk(&pair.secret)), paserk(&pair.public)))
    }
}

fn rfc3339(at: OffsetDateTime) -> anyhow::Result<String> {
    Ok(at.to_offset(time::UtcOffset::UTC).format(&Rfc3339)?)
}

fn claim_str<'a>(claims: &'a Claims, name: &str) -> Result<&'a str, InvalidAccessToken> {
    claims.get_claim(name).and_then(|v| v.as_str()).ok_or(InvalidAccessToken::Malformed)
}

fn claim_time(claims: &Claims, name: &str) -> Result<OffsetDateTime, InvalidAccessToken> {
    OffsetDateTime::parse(claim_str(claims, name)?, &Rfc3339).map_err(|_| InvalidAccessToken::Malformed)
}

impl AccessTokenIssuer for PasetoTokens {
    fn issue_for(&self, grant: &AccessGrant, now: OffsetDateTime) -> anyhow::Result<IssuedToken> {
        let expires_at = now + self.ttl;
        let mut claims = Claims::new().context("creating claims")?;
        let pasetors_err = |e: pasetors::errors::Error| anyhow::anyhow!("building the token: {e}");
        claims.issuer(&self.issuer).map_err(pasetors_err)?;
        claims.audience(&self.audience).map_err(pasetors_err)?;
        claims.subject(&grant.user_id.to_string()).map_err(pasetors_err)?;
        claims.issued_at(&rfc3339(now)?).map_err(pasetors_err)?;
        claims.not_before(&rfc3339(now)?).map_err(pasetors_err)?;
        claims.expiration(&rfc3339(expires_at)?).map_err(pasetors_err)?;
        claims.token_identifier(&Uuid::new_v4().to_string()).map_err(pasetors_err)?;
        claims.add_additional("sid", grant.session_id.to_string()).map_err(pasetors_err)?;
        // RFC 8176 method references and the OpenID Connect login time, so a
        // service can ask for a second factor, or a recent login, on its own.
        claims.add_additional("amr", grant.methods.amr()).map_err(pasetors_err)?;
        claims.add_additional("auth_time", rfc3339(grant.authenticated_at)?).map_err(pasetors_err)?;
        let mut footer = Footer::new();
        footer.key_id(&self.signing_kid);
        let token = pasetors::public::sign(&self.signing_key, &claims, Some(&footer), None).map_err(pasetors_err)?;
        Ok(IssuedToken { token: SecretString::from(token), expires_at })
    }

    fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessTokenClaims, InvalidAccessToken> {
        if token.len() > MAX_TOKEN_LENGTH {
            return Err(InvalidAccessToken::Malformed);
        }
        let untrusted = UntrustedToken::<Public, V4>::try_from(token).map_err(|_| InvalidAccessToken::Malformed)?;
        let footer_bytes = untrusted.untrusted_footer();
        let mut footer = Footer::new();
        footer.parse_bytes(footer_bytes).map_err(|_| InvalidAccessToken::Malformed)?;
        let kid = footer.get_claim("kid").and_then(|v| v.as_str()).ok_or(InvalidAccessToken::Malformed)?;
        let key = self.verifying_keys.iter().find(|k| k.kid == kid).ok_or(InvalidAccessToken::UnknownKey)?;
        let trusted = PublicToken::verify(&key.key, &untrusted, Some(footer_bytes), None)
            .map_err(|_| InvalidAccessToken::Malformed)?;
        let claims = Claims::from_string(trusted.payload()).map_err(|_| InvalidAccessToken::Malformed)?;

        if claim_str(&claims, "iss")? != self.issuer || claim_str(&claims, "aud")? != self.audience {
            return Err(InvalidAccessToken::WrongIssuerOrAudience);
        }
        let expires_at = claim_time(&claims, "exp")?;
        let not_before = claim_time(&claims, "nbf")?;
        let issued_at = claim_time(&claims, "iat")?;
        // We never issue tokens living longer than our configured lifetime: one
        // that does was minted elsewhere with our key (or under an older, longer
        // setting) and must not buy its holder more time than we grant.
        if expires_at - issued_at > self.ttl + self.leeway {
            return Err(InvalidAccessToken::LifetimeTooLong);
        }
        if now > expires_at + self.leeway {
            return Err(InvalidAccessToken::Expired);
        }
        if now + self.leeway < not_before || now + self.leeway < issued_at {
            return Err(InvalidAccessToken::NotYetValid);
        }
        let user_id = UserId::parse(claim_str(&claims, "sub")?).map_err(|_| InvalidAccessToken::Malformed)?;
        let token_id = Uuid::try_parse(claim_str(&claims, "jti")?).map_err(|_| InvalidAccessToken::Malformed)?;
        let session_id = match claims.get_claim("sid") {
            None => None,
            Some(sid) => Some(sid.as_str().and_then(|s| Uuid::try_parse(s).ok()).ok_or(InvalidAccessToken::Malformed)?),
        };
        let methods = match claims.get_claim("amr") {
            None => AuthMethods::Password,
            Some(amr) => amr
                .as_array()
                .and_then(|values| AuthMethods::from_amr(values.iter().filter_map(|v| v.as_str())))
                .ok_or(InvalidAccessToken::Malformed)?,
        };
        let authenticated_at = match claims.get_claim("auth_time") {
            None => None,
            Some(_) => Some(claim_time(&claims, "auth_time")?),
        };
        Ok(AccessTokenClaims {
            user_id,
            methods,
            authenticated_at,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            issued_at,
            not_before,
            expires_at,
            token_id,
            key_id: key.kid.clone(),
            session_id,
        })
    }

    fn public_keys(&self) -> Vec<PublicKeyInfo> {
        self.verifying_keys.iter().map(|k| PublicKeyInfo { kid: k.kid.clone(), public_key: k.paserk.clone() }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn settings() -> PasetoSettings {
        PasetoSettings {
            secret_key: None,
            previous_public_keys: vec![],
            issuer: "identity".into(),
            audience: "services".into(),
            access_token_ttl: Duration::from_secs(600),
            leeway: Duration::from_secs(30),
        }
    }

    fn tokens() -> PasetoTokens {
        PasetoTokens::new(settings()).unwrap().0
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let tokens = tokens();
        let user = UserId::new_v7();
        let issued = tokens.issue(user, Uuid::now_v7(), NOW).unwrap();
        let token = issued.token.expose_secret();
        assert!(token.starts_with("v4.public."));
        let claims = tokens.verify(token, NOW).unwrap();
        assert_eq!(claims.user_id, user);
        assert_eq!(claims.expires_at, NOW + Duration::from_secs(600));
        assert_eq!(claims.key_id, tokens.public_keys()[0].kid);
        assert!(claims.key_id.starts_with("k4.pid."));
    }

    #[test]
    fn tokens_carry_the_methods_and_the_time_of_their_login() {
        let tokens = tokens();
        let login = NOW - Duration::from_secs(3600);
        let grant = AccessGrant {
            user_id: UserId::new_v7(),
            session_id: Uuid::now_v7(),
            methods: AuthMethods::PasswordAndOtp,
            authenticated_at: login,
        };
        let issued = tokens.issue_for(&grant, NOW).unwrap();
        let claims = tokens.verify(issued.token.expose_secret(), NOW).unwrap();
        assert_eq!(claims.methods, AuthMethods::PasswordAndOtp);
        assert_eq!(claims.authenticated_at, Some(login));
        let password_only = tokens.issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap();
        assert_eq!(tokens.verify(password_only.token.expose_secret(), NOW).unwrap().methods, AuthMethods::Password);
    }

    #[test]
    fn expiry_and_not_before_allow_only_the_leeway() {
        let tokens = tokens();
        let token = tokens.issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap().token;
        let token = token.expose_secret();
        assert!(tokens.verify(token, NOW + Duration::from_secs(600 + 30)).is_ok());
        assert_eq!(tokens.verify(token, NOW + Duration::from_secs(600 + 31)), Err(InvalidAccessToken::Expired));
        assert!(tokens.verify(token, NOW - Duration::from_secs(30)).is_ok());
        assert_eq!(tokens.verify(token, NOW - Duration::from_secs(31)), Err(InvalidAccessToken::NotYetValid));
    }

    #[test]
    fn tokens_living_longer_than_our_lifetime_are_refused_even_with_our_key() {
        let (secret, _) = PasetoTokens::generate_secret_key().unwrap();
        let with_ttl = |ttl: Duration| {
            let secret = Some(SecretString::from(secret.expose_secret().to_owned()));
            PasetoTokens::new(PasetoSettings { secret_key: secret, access_token_ttl: ttl, ..settings() }).unwrap().0
        };
        let verifier = with_ttl(Duration::from_secs(600));
        let within_leeway = with_ttl(Duration::from_secs(600 + 30)).issue(UserId::new_v7(), Uuid::now_v7(), NOW);
        assert!(verifier.verify(within_leeway.unwrap().token.expose_secret(), NOW).is_ok());
        let long = with_ttl(Duration::from_secs(30 * 86_400)).issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap();
        assert_eq!(verifier.verify(long.token.expose_secret(), NOW), Err(InvalidAccessToken::LifetimeTooLong));
        let just_over = with_ttl(Duration::from_secs(600 + 31)).issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap();
        assert_eq!(verifier.verify(just_over.token.expose_secret(), NOW), Err(InvalidAccessToken::LifetimeTooLong));
    }

    #[test]
    fn tokens_from_another_key_are_refused() {
        let ours = tokens();
        let theirs = tokens();
        let token = theirs.issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap().token;
        assert_eq!(ours.verify(token.expose_secret(), NOW), Err(InvalidAccessToken::UnknownKey));
    }

    #[test]
    fn a_previous_key_still_verifies() {
        let (old_secret, old_public) = PasetoTokens::generate_secret_key().unwrap();
        let old = PasetoTokens::new(PasetoSettings { secret_key: Some(old_secret), ..settings() }).unwrap().0;
        let current =
            PasetoTokens::new(PasetoSettings { previous_public_keys: vec![old_public], ..settings() }).unwrap().0;
        let token = old.issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap().token;
        assert!(current.verify(token.expose_secret(), NOW).is_ok());
        assert_eq!(current.public_keys().len(), 2);
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let (secret, _) = PasetoTokens::generate_secret_key().unwrap();
        let with = |issuer: &str, audience: &str| {
            let secret = Some(SecretString::from(secret.expose_secret().to_owned()));
            PasetoTokens::new(PasetoSettings {
                secret_key: secret,
                issuer: issuer.into(),
                audience: audience.into(),
                ..settings()
            })
            .unwrap()
            .0
        };
        let token = with("identity", "services").issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap().token;
        let token = token.expose_secret();
        assert!(with("identity", "services").verify(token, NOW).is_ok());
        assert_eq!(with("identity", "billing").verify(token, NOW), Err(InvalidAccessToken::WrongIssuerOrAudience));
        assert_eq!(with("impostor", "services").verify(token, NOW), Err(InvalidAccessToken::WrongIssuerOrAudience));
    }

    #[test]
    fn garbage_and_tampering_are_malformed() {
        let tokens = tokens();
        let token = tokens.issue(UserId::new_v7(), Uuid::now_v7(), NOW).unwrap().token;
        let token = token.expose_secret();
        let mut tampered = token.to_owned();
        tampered.replace_range(20..21, if &token[20..21] == "A" { "B" } else { "A" });
        for bad in ["", "v4.public.", "v4.local.abc", "v3.public.abc", &tampered, &"x".repeat(5000)] {
            assert!(tokens.verify(bad, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_keys_round_trip_through_paserk() {
        let (secret, public) = PasetoTokens::generate_secret_key().unwrap();
        assert!(secret.expose_secret().starts_with("k4.secret."));
        let tokens = PasetoTokens::new(PasetoSettings { secret_key: Some(secret), ..settings() }).unwrap().0;
        assert_eq!(tokens.public_keys()[0].public_key, public);
        assert!(PasetoTokens::new(PasetoSettings { secret_key: Some("k4.secret.nope".into()), ..settings() }).is_err());
    }
}
