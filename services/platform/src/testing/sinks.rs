//! Real servers on loopback that record what they receive: an SMTP sink and an HTTP receiver
//! (for webhooks), so tests and benchmarks see exactly what left Kith, over real connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One email as the sink took it.
#[derive(Debug, Clone)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body, dot-unstuffed).
    pub data: String,
}

impl Email {
    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(found) = value.as_mut()
                && (line.starts_with(' ') || line.starts_with('\t'))
            {
                found.push_str(line.trim_start());
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The body, after the headers.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// An SMTP server that accepts every message and keeps it.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    record: Recorder<Email>,
    /// Stops the server once the last handle is dropped.
    _stop: Arc<tokio_util::sync::DropGuard>,
}

/// What a server keeps and how it tells waiters.
#[derive(Debug)]
struct Recorder<T> {
    items: Arc<Mutex<Vec<T>>>,
    arrived: Arc<Notify>,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self {
            items: Arc::clone(&self.items),
            arrived: Arc::clone(&self.arrived),
        }
    }
}

impl<T: Clone> Recorder<T> {
    fn new() -> Self {
        Self {
            items: Arc::default(),
            arrived: Arc::default(),
        }
    }

    fn push(&self, item: T) {
        lock(&self.items).push(item);
        self.arrived.notify_waiters();
    }

    fn all(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Waits until `done` holds of everything kept, or `timeout` passes (then `None`).
    async fn wait(&self, timeout: Duration, done: impl Fn(&[T]) -> bool) -> Result<Vec<T>, Vec<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let items = self.all();
            if done(&items) {
                return Ok(items);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Err(items);
            }
        }
    }
}

/// Accepts connections on `listener` until `stop`, handing each to `serve`.
fn accept_until<F, Fut>(listener: TcpListener, stop: CancellationToken, serve: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            tokio::spawn(serve(stream));
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl SmtpSink {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let stop = CancellationToken::new();
        let record = Recorder::new();
        let addr = listener.local_addr().expect("address");
        let serving = record.clone();
        accept_until(listener, stop.clone(), move |stream| {
            let record = serving.clone();
            async move {
                let _ = smtp_session(&record, stream).await;
            }
        });
        Self {
            addr,
            record,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// The URL Kith sends through (`--smtp-url`).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every email received so far.
    pub fn emails(&self) -> Vec<Email> {
        self.record.all()
    }

    /// Waits until at least `count` emails have arrived, or panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Email> {
        match self
            .record
            .wait(timeout, |emails| emails.len() >= count)
            .await
        {
            Ok(emails) => emails,
            Err(emails) => panic!(
                "{count} emails expected within {timeout:?}, got {}",
                emails.len()
            ),
        }
    }
}

async fn smtp_session(record: &Recorder<Email>, stream: TcpStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 kith-test-sink ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-kith-test-sink\r\n250 8BITMIME\r\n")
                .await?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().trim_matches(['<', '>']).to_owned();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(command[8..].trim().trim_matches(['<', '>']).to_owned());
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(unstuffed);
            }
            let data = data.strip_suffix("\r\n").unwrap_or(&data).to_owned();
            record.push(Email {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            write.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

/// One HTTP request as the receiver took it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

/// An HTTP/1.1 server that answers the first `failures` requests with 503 and the rest with
/// 204, keeping every request.
#[derive(Debug, Clone)]
pub struct HttpReceiver {
    pub addr: SocketAddr,
    record: Recorder<HttpRequest>,
    failures: Arc<AtomicUsize>,
    /// Stops the server once the last handle is dropped.
    _stop: Arc<tokio_util::sync::DropGuard>,
}

impl HttpReceiver {
    pub async fn start(failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the HTTP receiver");
        let stop = CancellationToken::new();
        let record = Recorder::new();
        let addr = listener.local_addr().expect("address");
        let failures = Arc::new(AtomicUsize::new(failures));
        let serving = record.clone();
        let failing = Arc::clone(&failures);
        accept_until(listener, stop.clone(), move |stream| {
            let record = serving.clone();
            let failures = Arc::clone(&failing);
            async move {
                let _ = http_connection(&record, &failures, stream).await;
            }
        });
        Self {
            addr,
            record,
            failures,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// From now on, answers every request with success (the endpoint was fixed).
    pub fn recover(&self) {
        self.failures.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.record.all()
    }

    /// Waits until at least `count` requests were answered with success, or panics after
    /// `timeout`; returns every request so far.
    pub async fn wait_for_successes(&self, count: usize, timeout: Duration) -> Vec<HttpRequest> {
        let done = |requests: &[HttpRequest]| {
            requests.iter().filter(|r| r.answered < 300).count() >= count
        };
        match self.record.wait(timeout, done).await {
            Ok(requests) => requests,
            Err(requests) => {
                panic!("{count} successful requests expected within {timeout:?}, got {requests:?}")
            }
        }
    }
}

async fn http_connection(
    record: &Recorder<HttpRequest>,
    failures: &AtomicUsize,
    stream: TcpStream,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let fail = failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let answered = if fail { 503 } else { 204 };
        record.push(HttpRequest {
            method,
            path,
            headers,
            body,
            answered,
        });
        let response = if fail {
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 204 No Content\r\n\r\n"
        };
        reader.get_mut().write_all(response.as_bytes()).await?;
    }
}
