//! A TCP proxy the tests control, to take a dependency away and give it back.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A free local port: bound then released, for a service that is "down" now
/// and will listen there later.
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Forwards every connection on `port` to `target` until dropped; dropping it
/// stops listening and cuts every forwarded connection.
pub struct TcpProxy {
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(port: u16, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the proxy port is free");
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { accept }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}
