//! Debug impls for messages that carry passwords or tokens (generated without
//! Debug by build.rs): a logged request never shows the secret.

use std::fmt;

use super::proto::{
    BeginTotpEnrollmentRequest, BeginTotpEnrollmentResponse, ChangePasswordRequest, CompleteMfaLoginRequest,
    ConfirmTotpEnrollmentRequest, ConfirmTotpEnrollmentResponse, DisableTotpRequest, LoginRequest, LoginResponse,
    LogoutRequest, RefreshSessionRequest, RefreshSessionResponse, RegenerateRecoveryCodesRequest,
    RegenerateRecoveryCodesResponse, ResetPasswordRequest, SignUpRequest, ValidateTokenRequest, VerifyEmailRequest,
};

const HIDDEN: &str = "<hidden>";

impl fmt::Debug for SignUpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignUpRequest")
            .field("email", &self.email)
            .field("password", &HIDDEN)
            .field("display_name", &self.display_name)
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .finish()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &HIDDEN)
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("access_token", &HIDDEN)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refresh_token", &HIDDEN)
            .field("refresh_token_expires_at", &self.refresh_token_expires_at)
            .field("user", &self.user)
            .finish()
    }
}

impl fmt::Debug for VerifyEmailRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyEmailRequest").field("token", &HIDDEN).finish()
    }
}

impl fmt::Debug for ValidateTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateTokenRequest").field("access_token", &HIDDEN).finish()
    }
}

impl fmt::Debug for RefreshSessionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshSessionRequest").field("refresh_token", &HIDDEN).field("client", &self.client).finish()
    }
}

impl fmt::Debug for RefreshSessionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshSessionResponse")
            .field("access_token", &HIDDEN)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refresh_token", &HIDDEN)
            .field("refresh_token_expires_at", &self.refresh_token_expires_at)
            .field("user", &self.user)
            .finish()
    }
}

impl fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutRequest").field("refresh_token", &HIDDEN).finish()
    }
}

impl fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePasswordRequest")
            .field("current_password", &HIDDEN)
            .field("new_password", &HIDDEN)
            .finish()
    }
}

impl fmt::Debug for ResetPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetPasswordRequest").field("token", &HIDDEN).field("new_password", &HIDDEN).finish()
    }
}

impl fmt::Debug for CompleteMfaLoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompleteMfaLoginRequest").field("challenge", &HIDDEN).field("code", &HIDDEN).finish()
    }
}

impl fmt::Debug for BeginTotpEnrollmentRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BeginTotpEnrollmentRequest").field("current_password", &HIDDEN).finish()
    }
}

impl fmt::Debug for BeginTotpEnrollmentResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BeginTotpEnrollmentResponse")
            .field("secret", &HIDDEN)
            .field("otpauth_uri", &HIDDEN)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for ConfirmTotpEnrollmentRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmTotpEnrollmentRequest").field("code", &HIDDEN).finish()
    }
}

impl fmt::Debug for ConfirmTotpEnrollmentResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmTotpEnrollmentResponse").field("recovery_codes", &HIDDEN).finish()
    }
}

impl fmt::Debug for DisableTotpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DisableTotpRequest").field("current_password", &HIDDEN).field("code", &HIDDEN).finish()
    }
}

impl fmt::Debug for RegenerateRecoveryCodesRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegenerateRecoveryCodesRequest").field("code", &HIDDEN).finish()
    }
}

impl fmt::Debug for RegenerateRecoveryCodesResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegenerateRecoveryCodesResponse").field("recovery_codes", &HIDDEN).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden() {
        let request =
            SignUpRequest { email: "a@example.com".into(), password: "s3cret-pass".into(), ..Default::default() };
        assert!(!format!("{request:?}").contains("s3cret-pass"));
        let response =
            LoginResponse { access_token: "v4.public.x".into(), refresh_token: "r3fresh".into(), ..Default::default() };
        let shown = format!("{response:?}");
        assert!(!shown.contains("v4.public.x") && !shown.contains("r3fresh"));
    }
}
