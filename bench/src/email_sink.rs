//! A stand-in for SendGrid's Mail Send API: answers 202 to every POST and notes
//! when the email for each recipient arrived.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use anyhow::Context;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Far above any email we render; a longer request is not ours.
const MAX_REQUEST: usize = 1024 * 1024;

pub struct EmailSink {
    pub port: u16,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for EmailSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl EmailSink {
    /// # Errors
    /// No port to listen on.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the SendGrid stand-in")?;
        let port = listener.local_addr()?.port();
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let server = tokio::spawn({
            let arrivals = Arc::clone(&arrivals);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, Arc::clone(&arrivals)));
                }
            }
        });
        Ok(Self { port, arrivals, server })
    }

    /// When the first email to `recipient` arrived.
    pub fn arrival(&self, recipient: &str) -> Option<Instant> {
        self.arrivals.lock().unwrap_or_else(PoisonError::into_inner).get(recipient).copied()
    }
}

/// HTTP/1.1 with keep-alive, as reqwest speaks it: a head, a body of
/// `Content-Length` bytes, and the next request on the same connection.
async fn serve(mut stream: TcpStream, arrivals: Arc<Mutex<HashMap<String, Instant>>>) {
    let mut buffer = Vec::with_capacity(8 * 1024);
    loop {
        let Some((head_len, body_len)) = read_head(&mut stream, &mut buffer).await else { return };
        while buffer.len() < head_len + body_len {
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        }
        let arrived = Instant::now();
        if let Some(recipient) = recipient(&buffer[head_len..head_len + body_len]) {
            arrivals.lock().unwrap_or_else(PoisonError::into_inner).entry(recipient).or_insert(arrived);
        }
        buffer.drain(..head_len + body_len);
        if stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").await.is_err() {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(read) => {
            buffer.extend_from_slice(&chunk[..read]);
            buffer.len() <= MAX_REQUEST
        }
    }
}

/// The length of the request head (through the blank line) and of the body.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(usize, usize)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let body_len = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .map_or(Some(0), |(_, value)| value.trim().parse().ok())?;
            return Some((end + 4, body_len));
        }
        if !read_more(stream, buffer).await {
            return None;
        }
    }
}

/// `personalizations[0].to[0].email` of a Mail Send body.
fn recipient(body: &[u8]) -> Option<String> {
    let mail: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(mail.pointer("/personalizations/0/to/0/email")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_recipient_is_noted_and_every_request_gets_202() {
        let sink = EmailSink::start().await.unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", sink.port)).await.unwrap();
        let body = r#"{"personalizations":[{"to":[{"email":"ada@example.com"}]}],"subject":"hi"}"#;
        let request = format!("POST /v3/mail/send HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        // Two requests on one connection, as a keep-alive client sends them.
        stream.write_all(format!("{request}{request}").as_bytes()).await.unwrap();
        let mut answers = String::new();
        while answers.matches("202").count() < 2 {
            let mut chunk = [0u8; 256];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the connection closed early");
            answers.push_str(std::str::from_utf8(&chunk[..read]).unwrap());
        }
        assert!(sink.arrival("ada@example.com").is_some());
        assert!(sink.arrival("grace@example.com").is_none());
    }
}
