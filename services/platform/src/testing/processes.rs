//! PostgreSQL and NATS servers of a test's own, on free ports, that the test can kill and restart
//! without disturbing any other test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use uuid::Uuid;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|candidate| {
        Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// Blocks until something accepts connections at `addr`, or panics after `timeout`.
fn wait_listening(what: &str, addr: SocketAddr, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {addr} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A NATS server with JetStream, its store in a folder of its own.
#[derive(Debug)]
pub struct PrivateNats {
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl PrivateNats {
    /// Starts a server on a free port with a fresh store.
    pub fn start() -> Self {
        Self::start_with(None, Vec::new())
    }

    /// Starts a server loading `config` (a nats-server config file), with `env` set for the
    /// variables it references.
    pub fn start_with(config: Option<PathBuf>, env: Vec<(String, String)>) -> Self {
        let store = std::env::temp_dir().join(format!("kith-nats-{}", Uuid::new_v4().simple()));
        let mut nats = Self {
            child: None,
            port: free_port(),
            store,
            config,
            env,
        };
        nats.restart();
        nats
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        let binary = find_program(&[
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ])
        .expect("nats-server must be installed for the NATS fault tests");
        let mut command = Command::new(binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(command.spawn().expect("start nats-server"));
        wait_listening(
            "nats-server",
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        );
    }

    /// Kills the server (SIGKILL); its store stays for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A PostgreSQL cluster of its own (initdb'd in a temp folder, trust auth for `postgres`), run as
/// the `postgres` account when the test runs as root.
#[derive(Debug)]
pub struct PrivatePostgres {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let version = entry.file_name().to_str()?.parse().ok()?;
                    let bin = entry.path().join("bin");
                    bin.join("postgres").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL must be installed under /usr/lib/postgresql for the database fault tests",
    )
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PrivatePostgres {
    /// initdb and start a cluster on a free port.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!("kith-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the data folder");
        if running_as_root() {
            let owned = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(owned.success(), "hand {} to postgres", dir.display());
        }
        let initdb = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(initdb.success(), "initdb {}", dir.display());
        let mut postgres = Self {
            child: None,
            port: free_port(),
            dir,
            bin,
        };
        postgres.restart();
        postgres
    }

    /// A URL for database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Starts the cluster again (after a kill it recovers from its WAL first).
    pub fn restart(&mut self) {
        use std::os::unix::process::CommandExt;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut child = as_server_user(&self.bin.join("postgres"))
                .arg("-D")
                .arg(&self.dir)
                .args(["-p", &self.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args([
                    "-c",
                    &format!("unix_socket_directories={}", self.dir.display()),
                ])
                .args(["-c", "fsync=off", "-c", "max_connections=200"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start postgres");
            // Until it accepts connections (listening is not enough: it may still say it is
            // starting up); a postmaster that exits at once (the backends of a killed one still
            // going away) is started again.
            loop {
                let ready = Command::new(self.bin.join("pg_isready"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success());
                if ready {
                    self.child = Some(child);
                    return;
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "PostgreSQL did not listen on {addr} within a minute"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start on {addr} within a minute"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the postmaster and every backend at once (SIGKILL), as a crash would. Backends lead
    /// process groups of their own, so they are found as the postmaster's children, with the
    /// postmaster stopped first so that it starts no new one meanwhile.
    pub fn kill(&mut self) {
        let postmaster = std::fs::read_to_string(self.dir.join("postmaster.pid"))
            .ok()
            .and_then(|pidfile| pidfile.lines().next().map(str::to_owned));
        if let Some(pid) = postmaster {
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
            let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
