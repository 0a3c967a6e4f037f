//! The one-click unsubscribe endpoint of RFC 8058: `POST /unsubscribe?member=..&signature=..`
//! with the body `List-Unsubscribe=One-Click` turns the member's email off, with no cookie and
//! no login (the signature is the proof). `GET` shows a page with a button and changes nothing,
//! since mail scanners follow links.

use std::net::SocketAddr;
use std::sync::Arc;

use kith_platform::aggregate::Repository;
use kith_platform::eventlog::Metadata;
use kith_platform::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::codec::MemberCodec;
use crate::delivery::Keys;
use crate::domain::MemberCommand;
use crate::service::MemberDecider;

/// The most a request may carry (headers and body).
const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Unsubscribe {
    pub(crate) members: Arc<Repository<MemberDecider, MemberCodec>>,
    pub(crate) keys: Keys,
}

impl Unsubscribe {
    /// Binds `addr` and answers until `shutdown`; returns the bound address.
    pub(crate) async fn serve(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| Error::Config(format!("--unsubscribe-listen {addr}: {err}")))?;
        let bound = listener
            .local_addr()
            .map_err(|err| Error::Config(format!("--unsubscribe-listen {addr}: {err}")))?;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let this = self.clone();
                tokio::spawn(async move { this.answer(stream).await });
            }
        });
        Ok(bound)
    }

    async fn answer(&self, mut stream: TcpStream) {
        let Some((head, body)) = read_request(&mut stream).await else {
            return;
        };
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (status, text) = if path != "/unsubscribe" {
            ("404 Not Found", "Nothing here.\n".to_owned())
        } else {
            match (method, self.signed_member(query)) {
                (_, None) => (
                    "403 Forbidden",
                    "This unsubscribe link is not valid.\n".to_owned(),
                ),
                ("GET", Some(_)) => (
                    "200 OK",
                    format!(
                        "To stop Kith notification emails, send this link a POST (your mail \
                         client's unsubscribe button does), or: curl -X POST -d \
                         List-Unsubscribe=One-Click '{target}'\n"
                    ),
                ),
                ("POST", Some(member)) if one_click(&body) => {
                    match self.unsubscribe(member).await {
                        Ok(()) => (
                            "200 OK",
                            "You will get no more notification emails.\n".to_owned(),
                        ),
                        Err(err) => {
                            tracing::warn!(%member, error = %err, "unsubscribe failed");
                            (
                                "503 Service Unavailable",
                                "Try again in a moment.\n".to_owned(),
                            )
                        }
                    }
                }
                ("POST", Some(_)) => (
                    "400 Bad Request",
                    "The body must be List-Unsubscribe=One-Click.\n".to_owned(),
                ),
                _ => ("405 Method Not Allowed", "Use POST.\n".to_owned()),
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    /// The member of a link whose signature is theirs.
    fn signed_member(&self, query: &str) -> Option<Uuid> {
        let mut member = None;
        let mut signature = None;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("member", value)) => member = value.parse::<Uuid>().ok(),
                Some(("signature", value)) => signature = Some(value),
                _ => {}
            }
        }
        let member = member?;
        self.keys
            .unsubscribe_signed(member, signature?)
            .then_some(member)
    }

    async fn unsubscribe(&self, member: Uuid) -> Result<()> {
        let metadata = Metadata {
            actor: Some(member.to_string()),
            ..Metadata::default()
        };
        match self
            .members
            .execute(
                &member.to_string(),
                None,
                &metadata,
                &MemberCommand::UnsubscribeEmail,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(%member, "unsubscribed from email by one click");
                Ok(())
            }
            Err(kith_platform::aggregate::Rejected::Platform(err)) => Err(err),
            Err(kith_platform::aggregate::Rejected::Domain(never)) => match never {},
        }
    }
}

/// Whether a form body says `List-Unsubscribe=One-Click`.
fn one_click(body: &str) -> bool {
    body.split('&')
        .any(|pair| pair.trim() == "List-Unsubscribe=One-Click")
}

/// Reads one request: its head as text and its body (by Content-Length).
async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 2048];
    let deadline = std::time::Duration::from_secs(5);
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if request.len() > MAX_REQUEST {
            return None;
        }
        match tokio::time::timeout(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => request.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = request[head_end + 4..].to_vec();
    while body.len() < length {
        match tokio::time::timeout(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => body.extend_from_slice(&buffer[..n]),
        }
    }
    body.truncate(length);
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}
