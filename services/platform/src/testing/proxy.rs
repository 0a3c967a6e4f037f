//! A TCP proxy that a test can make fall silent: from then on it forwards nothing in either
//! direction but keeps every connection open, as a vanished host or a dead network path does
//! (nothing is closed, nothing answers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy in front of `target`, listening on [`SilentProxy::addr`].
#[derive(Debug)]
pub struct SilentProxy {
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl SilentProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let silent = Arc::new(AtomicBool::new(false));
        let accept = {
            let silent = Arc::clone(&silent);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let silent = Arc::clone(&silent);
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, Arc::clone(&silent)),
                            pump(server_read, client_write, silent),
                        );
                    });
                }
            })
        };
        Self {
            addr,
            silent,
            accept,
        }
    }

    /// A database URL through the proxy, from one that goes straight to `target`.
    pub fn rewrite_url(&self, url: &str, target: SocketAddr) -> String {
        url.replace(&target.to_string(), &self.addr.to_string())
    }

    /// From now on, nothing passes and nothing is closed.
    pub fn silence(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buffer).await;
        if silent.load(Ordering::SeqCst) {
            // Whatever came (data, or the peer closing), pass nothing on and close nothing.
            let _kept = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        let read = match read {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
