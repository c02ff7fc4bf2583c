//! A small SMTP server on 127.0.0.1 that keeps every message it receives: enough of RFC 5321
//! (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for lettre. It can be stopped (connections
//! are refused) and started again on the same port, to play a mail server that is down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent, headers and body, with dot-stuffing undone.
    pub data: String,
}

impl ReceivedMail {
    /// A header's value (the first one with this name), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The text with quoted-printable soft breaks and `=3D` undone: what a reader sees.
    pub fn readable(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }

    /// The token of the reset link in the message.
    pub fn reset_token(&self) -> Option<String> {
        let text = self.readable();
        let start = text.find("/reset-totp?token=")? + "/reset-totp?token=".len();
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        (!token.is_empty()).then_some(token)
    }
}

pub struct SmtpSink {
    address: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    refusals: Arc<Mutex<Refusals>>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let address = socket.local_addr().expect("address");
        let sink = SmtpSink {
            address,
            received: Arc::default(),
            refusals: Arc::default(),
            server: Mutex::new(None),
        };
        sink.serve(socket);
        sink
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    fn serve(&self, socket: TcpSocket) {
        let listener = socket.listen(64).expect("listen");
        let received = Arc::clone(&self.received);
        let refusals = Arc::clone(&self.refusals);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(session(
                    stream,
                    Arc::clone(&received),
                    Arc::clone(&refusals),
                ));
            }
        });
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Stops listening and drops open connections: clients get "connection refused".
    pub async fn stop(&self) {
        let task = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(self.address).expect("rebind the same port");
        self.serve(socket);
    }

    /// From now on answers every `RCPT TO` for `address` with 451 (try again later), as a
    /// recipient's server that is unwell for hours does.
    pub fn refuse(&self, address: &str) {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .addresses
            .push(address.to_ascii_lowercase());
    }

    /// How many times a refused address was refused so far.
    pub fn refused(&self, address: &str) -> usize {
        let address = address.to_ascii_lowercase();
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered
            .iter()
            .filter(|a| **a == address)
            .count()
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (real time, up to `timeout`) until at least `count` messages arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

/// Addresses answered 451, and each refusal given.
#[derive(Default)]
struct Refusals {
    addresses: Vec<String>,
    answered: Vec<String>,
}

async fn session(
    stream: TcpStream,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    refusals: Arc<Mutex<Refusals>>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 sink\r\n",
            "MAIL" => {
                from = command
                    .split_once(':')
                    .map(|(_, a)| a.trim().to_owned())
                    .unwrap_or_default();
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                let address = command
                    .split_once(':')
                    .map(|(_, a)| a.trim().to_owned())
                    .unwrap_or_default();
                let bare = address
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_ascii_lowercase();
                let mut refusals = refusals.lock().unwrap_or_else(|p| p.into_inner());
                if refusals.addresses.contains(&bare) {
                    refusals.answered.push(bare);
                    b"451 4.3.0 mailbox temporarily unavailable, try again later\r\n"
                } else {
                    to.push(address);
                    b"250 OK\r\n"
                }
            }
            "DATA" => {
                if write.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                received
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(ReceivedMail {
                        from: from.clone(),
                        to: to.clone(),
                        data,
                    });
                b"250 OK queued\r\n"
            }
            "RSET" | "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not implemented\r\n",
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}
