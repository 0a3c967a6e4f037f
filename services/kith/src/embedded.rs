//! The embedded default: when nothing answers at the local addresses `kith up` is pointed at,
//! it starts PostgreSQL and NATS itself, with their data under `--data-dir` (`.kith/`), and stops
//! them when it stops. Only loopback addresses are ever started; a remote server that does not
//! answer is an error, as it should be.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Servers this process started, each in its own process group so that a terminal's Ctrl-C
/// reaches `kith` alone: it drains first, then stops them (gracefully) in [`Embedded::stop`].
/// They are killed if `kith` is dropped without stopping them.
#[derive(Debug, Default)]
pub(crate) struct Embedded {
    children: Vec<(&'static str, Child)>,
}

impl Embedded {
    /// Starts PostgreSQL and NATS where `database_url` and `nats_url` point at a loopback address
    /// nobody answers on.
    pub(crate) async fn ensure(
        database_url: &str,
        nats_url: &str,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut embedded = Self::default();
        if let Some(addr) = local_and_silent(database_url, 5432).await {
            let (child, data) = start_postgres(addr, &data_dir.join("postgres")).await?;
            if let Some(pid) = child.id() {
                kith_platform::runtime::register_helper_process(pid);
            }
            embedded.children.push(("PostgreSQL", child));
            println!(
                "started PostgreSQL on {addr} (data in {}, log in {})",
                data.display(),
                data_dir.join("postgres.log").display()
            );
        }
        if let Some(addr) = local_and_silent(nats_url, 4222).await {
            let child = start_nats(addr, &data_dir.join("nats")).await?;
            if let Some(pid) = child.id() {
                kith_platform::runtime::register_helper_process(pid);
            }
            embedded.children.push(("NATS", child));
            println!(
                "started NATS with JetStream on {addr} (data in {}, log in {})",
                data_dir.join("nats").display(),
                data_dir.join("nats.log").display()
            );
        }
        Ok(embedded)
    }

    /// Stops what was started, newest first, each with its own clean shutdown.
    pub(crate) async fn stop(mut self) {
        while let Some((name, mut child)) = self.children.pop() {
            if let Some(pid) = child.id() {
                // SIGINT to its whole process group (PostgreSQL may run under `runuser`): the
                // fast shutdown of PostgreSQL, the clean one of NATS.
                let _ = std::process::Command::new("kill")
                    .args(["-INT", "--", &format!("-{pid}")])
                    .status();
            }
            match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                Ok(_) => tracing::info!(server = name, "stopped"),
                Err(_) => {
                    tracing::warn!(server = name, "did not stop in 30 s; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// The socket address of a URL's host and port (`default_port` when absent), if it is a
/// loopback address and nothing accepts connections there.
async fn local_and_silent(url: &str, default_port: u16) -> Option<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        // [::1]:5432
        let (host, after) = bracketed.split_once(']')?;
        (
            host,
            after.strip_prefix(':').map(str::parse).transpose().ok()?,
        )
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse().ok()?)),
            None => (host_port, None),
        }
    };
    let ip = match host {
        "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
        other => other.parse().ok()?,
    };
    if !ip.is_loopback() {
        return None;
    }
    let addr = SocketAddr::new(ip, port.unwrap_or(default_port));
    let answered = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
    match answered {
        Ok(Ok(_)) => None,
        _ => Some(addr),
    }
}

async fn wait_until_listening(
    name: &str,
    addr: SocketAddr,
    child: &mut Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited ({status}) before accepting connections on {addr}; see its log above"
            );
        }
        if Instant::now() > deadline {
            bail!("{name} did not accept connections on {addr} within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL's server programs: on PATH, or in Debian's versioned folder (newest first).
fn postgres_bin() -> Option<PathBuf> {
    if let Some(found) = on_path("postgres") {
        return found.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A server's log, beside its data folder, appended to across runs.
fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// PostgreSQL refuses to run as root; as root, run it as the `postgres` account that Debian's
/// package creates.
fn as_server_user(program: &Path) -> anyhow::Result<Command> {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        Ok(command)
    } else {
        Ok(Command::new(program))
    }
}

fn hand_to_postgres(dir: &Path) -> anyhow::Result<()> {
    let owned = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()?;
    if !owned.success() {
        bail!("could not hand {} to the postgres account", dir.display());
    }
    Ok(())
}

/// A folder under the temp dir for the data of `dir`, private to the postgres account. The same
/// folder on every run, so the data stays, but only when it is the one an earlier run made: a
/// real directory (not a link), owned by postgres, closed to everyone else. Anything else under
/// that name (another user can create it first, the temp dir being shared) is left alone, and a
/// fresh folder with an unguessable name is made instead.
fn private_fallback(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let stable = std::env::temp_dir().join(format!("kith-postgres-{:016x}", hasher.finish()));
    let postgres = uid_of("postgres")?;
    let create = |path: &Path| std::fs::DirBuilder::new().mode(0o700).create(path);
    match std::fs::symlink_metadata(&stable) {
        Ok(meta)
            if meta.file_type().is_dir() && meta.uid() == postgres && meta.mode() & 0o077 == 0 =>
        {
            return Ok(stable);
        }
        Ok(_) => println!(
            "{} exists but is not a private folder of the postgres account; not using it",
            stable.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            create(&stable).with_context(|| format!("creating {}", stable.display()))?;
            return Ok(stable);
        }
        Err(err) => return Err(err).with_context(|| format!("inspecting {}", stable.display())),
    }
    loop {
        let fresh = std::env::temp_dir().join(format!("kith-postgres-{}", uuid::Uuid::new_v4()));
        match create(&fresh) {
            Ok(()) => return Ok(fresh),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("creating {}", fresh.display())),
        }
    }
}

/// The numeric user id of `account`.
fn uid_of(account: &str) -> anyhow::Result<u32> {
    let output = std::process::Command::new("id")
        .args(["-u", account])
        .output()
        .with_context(|| format!("looking up the {account} account"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| format!("no {account} account"))
}

fn postgres_can_write(dir: &Path) -> bool {
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(dir)
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts PostgreSQL with its data in `dir` (or, when the postgres account cannot reach `dir`, in
/// a folder of its own under the temp dir); returns it and where its data is.
async fn start_postgres(addr: SocketAddr, dir: &Path) -> anyhow::Result<(Child, PathBuf)> {
    let Some(bin) = postgres_bin() else {
        bail!(
            "nothing answers at {addr} and PostgreSQL is not installed; install it \
             (Debian/Ubuntu: `apt install postgresql`) or point --database-url at a running server"
        );
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.with_extension("log");
    let mut dir = dir.canonicalize()?;
    let running_as_root = as_server_user(&bin.join("postgres"))?
        .as_std()
        .get_program()
        == "runuser";
    if running_as_root {
        hand_to_postgres(&dir)?;
        if !postgres_can_write(&dir) {
            // A checkout under a private home (/root) is out of the postgres account's reach.
            let fallback = private_fallback(&dir)?;
            hand_to_postgres(&fallback)?;
            println!(
                "the postgres account cannot reach {}; keeping PostgreSQL's data in {} instead",
                dir.display(),
                fallback.display()
            );
            dir = fallback;
        }
    }
    if !dir.join("PG_VERSION").exists() {
        let status = as_server_user(&bin.join("initdb"))?
            .args(["-D"])
            .arg(&dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .stdout(Stdio::null())
            .status()
            .await
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed for {}", dir.display());
        }
    }
    let mut child = as_server_user(&bin.join("postgres"))?
        .arg("-D")
        .arg(&dir)
        .args(["-p", &addr.port().to_string()])
        .args(["-c", &format!("listen_addresses={}", addr.ip())])
        .args(["-c", &format!("unix_socket_directories={}", dir.display())])
        .stdout(Stdio::null())
        .stderr(log_file(&log)?)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting postgres")?;
    wait_until_listening("PostgreSQL", addr, &mut child).await?;
    Ok((child, dir))
}

async fn start_nats(addr: SocketAddr, dir: &Path) -> anyhow::Result<Child> {
    let Some(program) = on_path("nats-server").or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nats-server");
        sbin.exists().then_some(sbin)
    }) else {
        bail!(
            "nothing answers at {addr} and nats-server is not installed; install it \
             (Debian/Ubuntu: `apt install nats-server`) or point --nats-url at a running server"
        );
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut child = Command::new(program)
        .args(["--jetstream", "--addr", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .arg("--store_dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log_file(&dir.with_extension("log"))?)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting nats-server")?;
    wait_until_listening("NATS", addr, &mut child).await?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_folder_someone_else_made_first_is_not_used() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(postgres) = uid_of("postgres") else {
            panic!("these tests run where PostgreSQL is installed (the postgres account exists)");
        };
        let checkout = std::env::temp_dir().join(format!("kith-checkout-{}", uuid::Uuid::new_v4()));
        // Made first by someone else, open to all: refused, a fresh private folder instead.
        let planted = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            checkout.hash(&mut hasher);
            std::env::temp_dir().join(format!("kith-postgres-{:016x}", hasher.finish()))
        };
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
        let chosen = private_fallback(&checkout).unwrap();
        assert_ne!(chosen, planted);
        let meta = std::fs::metadata(&chosen).unwrap();
        assert_eq!(meta.mode() & 0o077, 0, "closed to group and others");
        std::fs::remove_dir(&chosen).unwrap();
        std::fs::remove_dir(&planted).unwrap();

        // Absent: made private, and once postgres owns it, the same folder on the next run.
        let first = private_fallback(&checkout).unwrap();
        assert_eq!(first, planted);
        assert_eq!(std::fs::metadata(&first).unwrap().mode() & 0o077, 0);
        hand_to_postgres(&first).unwrap();
        assert_eq!(std::fs::metadata(&first).unwrap().uid(), postgres);
        assert_eq!(private_fallback(&checkout).unwrap(), first);
        std::fs::remove_dir(&first).unwrap();
    }
}
