//! One caller per RPC the scenarios exercise.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use identity::grpc::proto::{self, user_service_client::UserServiceClient};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::load::Caller;

/// Every bench user's password: strong enough for the sign-up policy.
pub const PASSWORD: &str = "plum-orbit-canyon-47!";
pub const WRONG_PASSWORD: &str = "plum-orbit-canyon-48!";

pub type Client = UserServiceClient<Channel>;

/// Emails are unique per run and per batch, so that no sign-up collides.
#[derive(Debug, Clone)]
pub struct EmailSeries {
    prefix: String,
}

impl EmailSeries {
    pub fn new(run_id: &str, batch: usize) -> Self {
        Self { prefix: format!("bench-{run_id}-{batch}") }
    }

    pub fn email(&self, index: usize) -> String {
        format!("{}-{index}@example.com", self.prefix)
    }
}

pub fn sign_up_request(email: String) -> proto::SignUpRequest {
    proto::SignUpRequest {
        email,
        password: PASSWORD.to_owned(),
        display_name: "Bench User".to_owned(),
        first_name: "Bench".to_owned(),
        last_name: "User".to_owned(),
    }
}

/// Signs up `series.email(index)` and remembers the addresses that succeeded.
pub struct SignUpCaller {
    pub client: Client,
    pub series: EmailSeries,
    pub created: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Caller for SignUpCaller {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
        let email = self.series.email(index);
        self.client.sign_up(sign_up_request(email.clone())).await?;
        self.created.lock().unwrap_or_else(PoisonError::into_inner).push(email);
        Ok(())
    }
}

/// Logs in as the verified users in turn, with the right password.
pub struct LoginCaller {
    pub client: Client,
    pub users: Arc<Vec<String>>,
}

#[async_trait]
impl Caller for LoginCaller {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
        let email = self.users[index % self.users.len()].clone();
        self.client.login(proto::LoginRequest { email, password: PASSWORD.to_owned(), client: None }).await?;
        Ok(())
    }
}

pub struct ValidateTokenCaller {
    pub client: Client,
    pub tokens: Arc<Vec<String>>,
}

#[async_trait]
impl Caller for ValidateTokenCaller {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
        let access_token = self.tokens[index % self.tokens.len()].clone();
        self.client.validate_token(proto::ValidateTokenRequest { access_token }).await?;
        Ok(())
    }
}

/// `authorization: Bearer <token>` values, built once.
pub fn bearer_values(tokens: &[String]) -> anyhow::Result<Arc<Vec<MetadataValue<Ascii>>>> {
    let values = tokens
        .iter()
        .map(|token| format!("Bearer {token}").parse().map_err(|_| anyhow::anyhow!("a token is not ASCII metadata")))
        .collect::<anyhow::Result<_>>()?;
    Ok(Arc::new(values))
}

pub struct GetCurrentUserCaller {
    pub client: Client,
    pub bearers: Arc<Vec<MetadataValue<Ascii>>>,
}

#[async_trait]
impl Caller for GetCurrentUserCaller {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
        let mut request = Request::new(proto::GetCurrentUserRequest {});
        request.metadata_mut().insert("authorization", self.bearers[index % self.bearers.len()].clone());
        self.client.get_current_user(request).await?;
        Ok(())
    }
}

/// Rotates its own session: each refresh spends the token and uses the new one,
/// as a client does (presenting a spent token would revoke the session).
pub struct RefreshCaller {
    pub client: Client,
    pub refresh_token: String,
}

#[async_trait]
impl Caller for RefreshCaller {
    async fn call(&mut self, _index: usize) -> Result<(), tonic::Status> {
        let request = proto::RefreshSessionRequest { refresh_token: self.refresh_token.clone(), client: None };
        self.refresh_token = self.client.refresh_session(request).await?.into_inner().refresh_token;
        Ok(())
    }
}

/// Of every hundred calls: one sign-up, nine logins, ninety token validations.
pub struct MixedCaller {
    pub sign_up: SignUpCaller,
    pub login: LoginCaller,
    pub validate: ValidateTokenCaller,
}

#[async_trait]
impl Caller for MixedCaller {
    async fn call(&mut self, index: usize) -> Result<(), tonic::Status> {
        match index % 100 {
            0 => self.sign_up.call(index).await,
            1..=9 => self.login.call(index).await,
            _ => self.validate.call(index).await,
        }
    }
}

/// The access and refresh tokens of one login.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
}

/// Logs in `count` times, as the users in turn, all at once.
///
/// # Errors
/// A login failed.
pub async fn log_in(client: &Client, users: &[String], count: usize) -> anyhow::Result<Vec<Session>> {
    let logins: Vec<_> = (0..count)
        .map(|index| {
            let mut client = client.clone();
            let email = users[index % users.len()].clone();
            tokio::spawn(async move {
                let answer =
                    client.login(proto::LoginRequest { email, password: PASSWORD.to_owned(), client: None }).await?;
                let answer = answer.into_inner();
                Ok::<_, tonic::Status>(Session {
                    access_token: answer.access_token,
                    refresh_token: answer.refresh_token,
                })
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(count);
    for login in logins {
        sessions.push(login.await?.map_err(|status| anyhow::anyhow!("logging in for the bench: {status}"))?);
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_differ_across_runs_batches_and_indexes() {
        let a = EmailSeries::new("run1", 0);
        let b = EmailSeries::new("run1", 1);
        assert_ne!(a.email(0), a.email(1));
        assert_ne!(a.email(0), b.email(0));
        assert_ne!(a.email(0), EmailSeries::new("run2", 0).email(0));
        assert!(identity::domain::Email::parse(&a.email(7)).is_ok());
    }
}
