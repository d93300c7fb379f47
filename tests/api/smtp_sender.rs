//! The SMTP provider against a minimal SMTP server on 127.0.0.1, which records
//! what it was sent and answers as scripted.

use std::sync::{Arc, Mutex};

use identity::{
    domain::{
        Email,
        ports::{EmailSender, OutgoingEmail, SendEmailError},
    },
    infrastructure::email::{EmailProvider, EmailSettings, SmtpEmailSender},
};
use secrecy::SecretString;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// Replies to RCPT TO with `rcpt_reply`; records every line it reads.
async fn smtp_server(rcpt_reply: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let transcript = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&transcript);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake.smtp ESMTP\r\n").await.unwrap();
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    recorded.lock().unwrap().push(line.clone());
                    let reply: &str = if in_data {
                        if line == "." {
                            in_data = false;
                            "250 queued\r\n"
                        } else {
                            continue;
                        }
                    } else {
                        let verb = line.split(' ').next().unwrap_or_default().to_ascii_uppercase();
                        match verb.as_str() {
                            "EHLO" | "HELO" => "250-fake.smtp\r\n250 8BITMIME\r\n",
                            "MAIL" => "250 ok\r\n",
                            "RCPT" => rcpt_reply,
                            "DATA" => {
                                in_data = true;
                                "354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => "250 ok\r\n",
                        }
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, transcript)
}

fn sender(port: u16) -> SmtpEmailSender {
    SmtpEmailSender::new(&EmailSettings {
        provider: EmailProvider::Smtp,
        from: Email::parse("no-reply@identity.test").unwrap(),
        sendgrid_api_key: None,
        sendgrid_base_url: "https://api.sendgrid.com".into(),
        smtp_url: Some(SecretString::from(format!("smtp://127.0.0.1:{port}"))),
        timeout: std::time::Duration::from_secs(5),
    })
    .unwrap()
}

fn email() -> OutgoingEmail {
    OutgoingEmail {
        event_id: uuid::Uuid::now_v7(),
        to: Email::parse("ada@example.com").unwrap(),
        subject: "Confirm your email address".into(),
        text_body: "plain https://app.example/verify?token=abc".into(),
        html_body: "<p>html https://app.example/verify?token=abc</p>".into(),
    }
}

#[tokio::test]
async fn smtp_delivers_both_bodies_to_the_recipient() {
    let (port, transcript) = smtp_server("250 ok\r\n").await;
    sender(port).send(&email()).await.unwrap();
    let lines = transcript.lock().unwrap().join("\n");
    assert!(lines.contains("MAIL FROM:<no-reply@identity.test>"), "{lines}");
    assert!(lines.contains("RCPT TO:<ada@example.com>"), "{lines}");
    assert!(lines.contains("Subject: Confirm your email address"), "{lines}");
    assert!(lines.contains("text/plain") && lines.contains("text/html"), "{lines}");
    assert!(lines.contains("plain https://app.example/verify?token=abc"), "{lines}");
}

#[tokio::test]
async fn smtp_refusals_are_permanent_and_temporary_failures_transient() {
    let (port, _) = smtp_server("550 no such user\r\n").await;
    assert!(matches!(sender(port).send(&email()).await, Err(SendEmailError::Permanent { .. })));
    let (port, _) = smtp_server("451 try again later\r\n").await;
    assert!(matches!(sender(port).send(&email()).await, Err(SendEmailError::Transient { .. })));
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_transient() {
    let port = testkit::free_port().unwrap();
    assert!(matches!(sender(port).send(&email()).await, Err(SendEmailError::Transient { .. })));
}
