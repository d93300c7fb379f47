use std::time::Duration;

use anyhow::Context;
use lapin::{Channel, Connection, ConnectionProperties, options::ConfirmSelectOptions};
use secrecy::{ExposeSecret, SecretString};

/// A connection that cannot be made within this bound counts as failed, so that
/// a black-holed broker never hangs the caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection and one channel in publisher-confirm mode.
///
/// # Errors
/// The broker is unreachable or refuses us. The URL (which may carry a
/// password) never appears in the error.
pub async fn connect(url: &SecretString, connection_name: &str) -> anyhow::Result<(Connection, Channel)> {
    crate::infrastructure::email::install_crypto_provider();
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url.expose_secret(), properties))
        .await
        .context("timed out connecting to RabbitMQ")?
        .context("cannot connect to RabbitMQ")?;
    let channel = connection.create_channel().await.context("cannot open a RabbitMQ channel")?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.context("cannot enable publisher confirms")?;
    Ok((connection, channel))
}
