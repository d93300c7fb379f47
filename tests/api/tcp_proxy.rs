//! A TCP proxy the tests control, to take a dependency away and give it back.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Forwards every connection on `port` to `target` until dropped; dropping it
/// stops listening and cuts every forwarded connection.
pub struct TcpProxy {
    accept: JoinHandle<()>,
}

/// Binds `port`, retrying briefly: a proxy just dropped may still hold it.
async fn bind(port: u16) -> TcpListener {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(error) => {
                assert!(tokio::time::Instant::now() < deadline, "port {port} stays taken: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

impl TcpProxy {
    /// Accepts connections on `port` and holds them open without ever answering:
    /// a dependency that hangs rather than refuses.
    pub async fn blackhole(port: u16) -> Self {
        let listener = bind(port).await;
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { accept }
    }

    pub async fn start(port: u16, target: SocketAddr) -> Self {
        let listener = bind(port).await;
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
