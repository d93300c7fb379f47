//! The server's use cases, wired to the adapters and the settings.

use std::{sync::Arc, time::Duration};

use super::adapters::Adapters;
use crate::{
    application::{
        AccessGuard, AdminUsers, BeginTotpEnrollment, ChangePassword, CompleteMfaLogin, ConfirmEmailChange,
        ConfirmTotpEnrollment, DisableTotp, GetCurrentUser, ListSessions, Login, Logout, LogoutAll, PasswordRules,
        RefreshSession, RegenerateRecoveryCodes, RequestEmailChange, RequestPasswordReset, ResendVerificationEmail,
        ResetPassword, RevokeSession, SecondFactors, SessionIssuer, SignUp, ValidateToken, VerifyEmail,
    },
    config::Settings,
    domain::{PasswordPolicy, ResendPolicy, ThrottlePolicy},
    infrastructure::ZxcvbnMeter,
};

/// Most verification emails per address per hour.
const RESEND_MAX_PER_HOUR: u32 = 5;

pub(super) struct UseCases {
    pub password_rules: PasswordRules,
    pub registration: Registration,
    pub sessions: Sessions,
    pub passwords: Passwords,
    pub email_change: EmailChange,
    pub two_factor: TwoFactor,
    pub admin: AdminUsers,
    /// Hears the other replicas' revocations.
    pub guard: Arc<AccessGuard>,
}

pub(super) struct EmailChange {
    pub request: RequestEmailChange,
    pub confirm: ConfirmEmailChange,
}

pub(super) struct TwoFactor {
    pub complete_mfa_login: CompleteMfaLogin,
    pub begin_totp_enrollment: BeginTotpEnrollment,
    pub confirm_totp_enrollment: ConfirmTotpEnrollment,
    pub disable_totp: DisableTotp,
    pub regenerate_recovery_codes: RegenerateRecoveryCodes,
}

pub(super) struct Registration {
    pub sign_up: SignUp,
    pub verify_email: VerifyEmail,
    pub resend_verification_email: ResendVerificationEmail,
}

pub(super) struct Sessions {
    pub login: Login,
    pub validate_token: ValidateToken,
    pub get_current_user: GetCurrentUser,
    pub refresh_session: RefreshSession,
    pub list_sessions: ListSessions,
    pub revoke_session: RevokeSession,
    pub logout: Logout,
    pub logout_all: LogoutAll,
}

pub(super) struct Passwords {
    pub change_password: ChangePassword,
    pub request_password_reset: RequestPasswordReset,
    pub reset_password: ResetPassword,
}

/// What several use cases share: one guard (and its revocation cache), one set
/// of policies.
struct Shared {
    guard: Arc<AccessGuard>,
    issuer: Arc<SessionIssuer>,
    factors: Arc<SecondFactors>,
    password_rules: PasswordRules,
    throttle_policy: ThrottlePolicy,
    resend_policy: ResendPolicy,
}

impl UseCases {
    pub fn build(a: &Adapters, settings: &Settings) -> Self {
        let argon2 = settings.passwords.argon2;
        let shared = Shared {
            issuer: Arc::new(SessionIssuer {
                tokens: a.tokens.clone(),
                clock: a.clock.clone(),
                refresh_ttl: settings.tokens.refresh_token_ttl,
                max_lifetime: settings.tokens.session_max_lifetime,
                notify_new_device: settings.notices.new_device,
            }),
            factors: Arc::new(SecondFactors {
                mfa: a.mfa.clone(),
                cipher: a.secret_cipher.clone(),
                totp: a.totp.clone(),
                clock: a.clock.clone(),
            }),
            guard: Arc::new(
                AccessGuard::new(
                    a.tokens.clone(),
                    a.users.clone(),
                    a.sessions.clone(),
                    a.clock.clone(),
                    settings.tokens.revocation_cache_ttl,
                )
                .with_broadcast(a.revocations.clone()),
            ),
            password_rules: PasswordRules {
                policy: PasswordPolicy { min_length: settings.passwords.min_length },
                // As many strength checks at once as hashes: both are CPU-bound.
                meter: Arc::new(ZxcvbnMeter::new(argon2.max_concurrent, argon2.queue_timeout)),
            },
            throttle_policy: ThrottlePolicy {
                free_attempts: settings.limits.login_throttle_after,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(15 * 60),
                hard_cap: ThrottlePolicy::NIST_HARD_CAP,
                hard_cap_window: Duration::from_secs(24 * 3600),
            },
            resend_policy: ResendPolicy {
                cooldown: settings.limits.resend_cooldown,
                max_per_hour: RESEND_MAX_PER_HOUR,
            },
        };
        Self {
            registration: registration(a, settings, &shared),
            sessions: sessions(a, settings, &shared),
            passwords: passwords(a, settings, &shared),
            email_change: email_change(a, settings, &shared),
            two_factor: two_factor(a, settings, &shared),
            admin: AdminUsers {
                users: a.users.clone(),
                accounts: a.accounts.clone(),
                sessions: a.sessions.clone(),
                mfa: a.mfa.clone(),
                guard: shared.guard.clone(),
                clock: a.clock.clone(),
                verification_links: settings.links.verification_url.clone(),
                verification_ttl: settings.links.verification_token_ttl,
                notices: settings.notices,
            },
            guard: shared.guard,
            password_rules: shared.password_rules,
        }
    }
}

fn registration(a: &Adapters, settings: &Settings, shared: &Shared) -> Registration {
    Registration {
        sign_up: SignUp {
            users: a.users.clone(),
            notices: a.notices.clone(),
            notice_policy: shared.resend_policy,
            hasher: a.hasher.clone(),
            clock: a.clock.clone(),
            links: settings.links.verification_url.clone(),
            verification_ttl: settings.links.verification_token_ttl,
            is_enumeration_safe: settings.server.signup_enumeration_safe,
        },
        verify_email: VerifyEmail {
            users: a.users.clone(),
            tokens: a.single_use_tokens.clone(),
            clock: a.clock.clone(),
        },
        resend_verification_email: ResendVerificationEmail {
            users: a.users.clone(),
            tokens: a.single_use_tokens.clone(),
            clock: a.clock.clone(),
            links: settings.links.verification_url.clone(),
            verification_ttl: settings.links.verification_token_ttl,
            policy: shared.resend_policy,
        },
    }
}

fn sessions(a: &Adapters, settings: &Settings, shared: &Shared) -> Sessions {
    let issuer = shared.issuer.clone();
    let guard = &shared.guard;
    Sessions {
        login: Login {
            users: a.users.clone(),
            sessions: a.sessions.clone(),
            hasher: a.hasher.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            issuer: issuer.clone(),
            mfa: a.mfa.clone(),
            clock: a.clock.clone(),
            is_enumeration_safe: settings.server.signup_enumeration_safe,
        },
        validate_token: ValidateToken { guard: guard.clone() },
        get_current_user: GetCurrentUser { guard: guard.clone(), users: a.users.clone() },
        refresh_session: RefreshSession {
            sessions: a.sessions.clone(),
            issuer,
            guard: guard.clone(),
            clock: a.clock.clone(),
            reuse_grace: settings.tokens.refresh_reuse_grace,
        },
        list_sessions: ListSessions { guard: guard.clone(), sessions: a.sessions.clone(), clock: a.clock.clone() },
        revoke_session: RevokeSession { guard: guard.clone(), sessions: a.sessions.clone(), clock: a.clock.clone() },
        logout: Logout { sessions: a.sessions.clone(), guard: guard.clone(), clock: a.clock.clone() },
        logout_all: LogoutAll { guard: guard.clone(), accounts: a.accounts.clone(), clock: a.clock.clone() },
    }
}

fn passwords(a: &Adapters, settings: &Settings, shared: &Shared) -> Passwords {
    Passwords {
        change_password: ChangePassword {
            guard: shared.guard.clone(),
            accounts: a.accounts.clone(),
            hasher: a.hasher.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            rules: shared.password_rules.clone(),
            clock: a.clock.clone(),
            notices: settings.notices,
        },
        request_password_reset: RequestPasswordReset {
            users: a.users.clone(),
            tokens: a.single_use_tokens.clone(),
            clock: a.clock.clone(),
            links: settings.links.password_reset_url.clone(),
            ttl: settings.links.password_reset_token_ttl,
            policy: shared.resend_policy,
        },
        reset_password: ResetPassword {
            accounts: a.accounts.clone(),
            tokens: a.single_use_tokens.clone(),
            hasher: a.hasher.clone(),
            throttles: a.throttles.clone(),
            guard: shared.guard.clone(),
            rules: shared.password_rules.clone(),
            clock: a.clock.clone(),
            notices: settings.notices,
        },
    }
}

fn email_change(a: &Adapters, settings: &Settings, shared: &Shared) -> EmailChange {
    EmailChange {
        request: RequestEmailChange {
            guard: shared.guard.clone(),
            users: a.users.clone(),
            accounts: a.accounts.clone(),
            tokens: a.single_use_tokens.clone(),
            hasher: a.hasher.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            clock: a.clock.clone(),
            links: settings.links.email_change_url.clone(),
            ttl: settings.links.email_change_token_ttl,
            policy: shared.resend_policy,
            notices: settings.notices,
        },
        confirm: ConfirmEmailChange {
            users: a.users.clone(),
            accounts: a.accounts.clone(),
            tokens: a.single_use_tokens.clone(),
            guard: shared.guard.clone(),
            clock: a.clock.clone(),
            notices: settings.notices,
        },
    }
}

fn two_factor(a: &Adapters, settings: &Settings, shared: &Shared) -> TwoFactor {
    TwoFactor {
        complete_mfa_login: CompleteMfaLogin {
            users: a.users.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            issuer: shared.issuer.clone(),
            factors: shared.factors.clone(),
        },
        begin_totp_enrollment: BeginTotpEnrollment {
            guard: shared.guard.clone(),
            accounts: a.accounts.clone(),
            hasher: a.hasher.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            factors: shared.factors.clone(),
            issuer: settings.mfa.issuer.clone(),
        },
        confirm_totp_enrollment: ConfirmTotpEnrollment {
            guard: shared.guard.clone(),
            accounts: a.accounts.clone(),
            factors: shared.factors.clone(),
        },
        disable_totp: DisableTotp {
            guard: shared.guard.clone(),
            accounts: a.accounts.clone(),
            hasher: a.hasher.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            factors: shared.factors.clone(),
        },
        regenerate_recovery_codes: RegenerateRecoveryCodes {
            guard: shared.guard.clone(),
            accounts: a.accounts.clone(),
            throttles: a.throttles.clone(),
            throttle_policy: shared.throttle_policy,
            factors: shared.factors.clone(),
        },
    }
}
