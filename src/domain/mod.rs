//! The pure core: value types that can only hold valid values, the `User` entity
//! with its status transitions, domain events and the ports (traits) the use cases
//! need. Nothing here knows about gRPC, SQL or brokers. Two primitives are used
//! directly because they are what the values are: `rand` draws opaque tokens
//! from the OS generator and `sha2` digests them (and throttle keys), so that
//! how a token is stored is decided once, here, not by each adapter; `hex`
//! spells the digests. Password hashing and token signing are behind ports.

pub mod client_address;
pub mod client_context;
pub mod durations;
pub mod email;
pub mod events;
pub mod login_throttle;
pub mod mfa;
pub mod opaque_token;
pub mod password;
pub mod person_name;
pub mod ports;
pub mod resend_policy;
pub mod token_claims;
pub mod user;
pub mod user_events;

pub use client_address::ClientAddress;
pub use client_context::{ClientContext, ClientContextError, DeviceFingerprint, UserAgent, parse_client_address};
pub use email::{Email, EmailError};
pub use events::{
    AccountNotice, DomainEvent, EMAIL_EVENT_TYPES, EmailChangeRequested, NewDeviceSignIn, PasswordResetRequested,
    VerificationEmailRequested,
};
pub use login_throttle::{AdmittedAttempt, LoginAttemptKeys, ThrottleKey, ThrottlePolicy, ThrottleState};
pub use mfa::{AuthMethods, RecoveryCode, SecondFactor, SecondFactorError, TotpCode, TotpSecret};
pub use opaque_token::{OpaqueToken, TokenHash};
pub use password::{NewPassword, PasswordError, PasswordHash, PasswordPolicy, PasswordStrength, PlaintextPassword};
pub use person_name::{PersonName, PersonNameError};
pub use resend_policy::ResendPolicy;
pub use token_claims::{AccessGrant, AccessTokenClaims, IssuedToken};
pub use user::{
    AccountStateError, LoginRefusal, PersonNames, User, UserId, UserStatus, UserTimestamps, VerifyEmailError,
};
pub use user_events::{EndedSessions, RevocationReason, USER_EVENT_TYPES, UserChange, UserEvent};
