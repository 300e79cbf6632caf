//! A private OCI distribution registry per test: Debian's `docker-registry` (distribution 2.8) on
//! `127.0.0.1:<free port>`, its storage and config in a temp dir, optionally behind htpasswd basic
//! auth. Killed by pid, and its temp dir removed, when the guard drops (also on panic).
//!
//! Images get in with skopeo: [`Registry::push`] copies an OCI layout (the harness's busybox, see
//! [`crate::image`]) in, as OCI or Docker v2s2, gzip or zstd.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

pub struct Registry {
    dir: TempDir,
    port: u16,
    child: Child,
    creds: Option<(String, String)>,
}

/// How [`Registry::push`] writes the image.
#[derive(Debug, Clone, Default)]
pub struct Push {
    /// `--format v2s2` (Docker schema 2) instead of the source's OCI manifest.
    pub docker_v2s2: bool,
    /// `--dest-compress-format zstd`.
    pub zstd: bool,
    /// `--all`: copy every image of an index.
    pub all: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Registry {
        Registry::spawn(None, false)
    }

    /// A registry serving HTTPS with a self-signed certificate for 127.0.0.1 (made with openssl).
    /// [`Registry::request`] speaks plain HTTP and cannot reach it.
    pub fn start_tls() -> Registry {
        Registry::spawn(None, true)
    }

    /// A registry that requires basic auth as `user:password`.
    pub fn with_auth(user: &str, password: &str) -> Registry {
        Registry::spawn(Some((user.to_string(), password.to_string())), false)
    }

    fn spawn(creds: Option<(String, String)>, tls: bool) -> Registry {
        let dir = tempfile::Builder::new().prefix("roci-registry-").tempdir().expect("create registry temp dir");
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("create registry storage dir");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=roci-test"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "openssl req failed: {}", String::from_utf8_lossy(&out.stderr));
            // Still under `http:`, so before the top-level `auth:`.
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if let Some((user, password)) = &creds {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: roci-test\n    path: {}\n", htpasswd.display()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("create registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup registry log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let mut reg = Registry { dir, port, child, creds };
        let up = crate::wait_for(Duration::from_secs(20), || {
            if tls {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                matches!(reg.request("GET", "/v2/", None, &[]), Ok((200 | 401, _)))
            }
        });
        if !up {
            let status = reg.child.try_wait();
            panic!("docker-registry on port {port} did not answer /v2/ ({status:?}); log:\n{}", reg.log());
        }
        reg
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The registry's temp dir (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn creds(&self) -> Option<(String, String)> {
        self.creds.clone()
    }

    /// The registry's log so far (its access log lists every request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests whose log line contains `needle` (for example `"GET /v2/busybox/blobs/"`).
    pub fn count_requests(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Copies `src` (a skopeo source such as `oci:/dir:latest`) to `NAME:TAG` in this registry;
    /// returns the pushed manifest's digest.
    pub fn push(&self, src: &str, name_tag: &str, how: &Push) -> String {
        let digest_file = self.dir.path().join(format!("digest-{}", name_tag.replace(['/', ':'], "_")));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"]).arg(&digest_file);
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        if how.docker_v2s2 {
            cmd.args(["--format", "v2s2"]);
        }
        if how.zstd {
            cmd.args(["--dest-compress-format", "zstd"]);
        }
        if how.all {
            cmd.arg("--all");
        }
        cmd.arg(src).arg(format!("docker://{}/{name_tag}", self.host()));
        let out = cmd.output().expect("run skopeo");
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&digest_file).expect("read skopeo's digest file").trim().to_string()
    }

    /// A minimal HTTP/1.1 request to the registry (no auth); returns status and body.
    pub fn request(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut resp = vec![];
        s.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:?}")))?;
        let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
        Ok((status, resp[body_at..].to_vec()))
    }

    /// Where the registry keeps blob `sha256:HEX` on disk.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join(format!("storage/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

/// A TCP relay that makes the host's registry reachable from a private network namespace:
/// connections to `127.0.0.1:PORT` inside the namespace of process `pid` go to the host's
/// `127.0.0.1:PORT`. The listening socket is made by a thread that joins that namespace (`setns`)
/// and exits; the relaying runs in the test's own namespace. Stopped when dropped; a connection in
/// flight ends when either side closes it.
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn into_netns(pid: i32, port: u16) -> Relay {
        let ns = format!("/proc/{pid}/ns/net");
        let listener = std::thread::spawn(move || -> std::io::Result<TcpListener> {
            let netns = std::fs::File::open(&ns)?;
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            TcpListener::bind(("127.0.0.1", port))
        })
        .join()
        .expect("the relay's setns thread panicked")
        .unwrap_or_else(|e| panic!("listen on 127.0.0.1:{port} in the network namespace of {pid}: {e}"));
        listener.set_nonblocking(true).expect("make the relay's listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        let Ok(host) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                        if inside.set_nonblocking(false).is_err() {
                            continue;
                        }
                        pipe(inside, host);
                    }
                    // WouldBlock (nobody is connecting), or a connection reset before it was taken.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Relay { stop, thread: Some(thread) }
    }
}

/// Copy both ways between `a` and `b` until each side has closed, on threads of their own.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in
        [(a.try_clone(), b.try_clone()), (b.try_clone(), a.try_clone())].into_iter().filter_map(|(f, t)| Some((f.ok()?, t.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid (SIGKILL); wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_starts_and_stops() {
        let reg = Registry::start();
        let (pid, dir) = (reg.pid(), reg.dir().to_path_buf());
        assert_eq!(reg.request("GET", "/v2/", None, &[]).unwrap().0, 200);
        drop(reg);
        assert!(crate::is_dead(pid));
        assert!(!dir.exists());

        let reg = Registry::with_auth("u", "p");
        assert_eq!(reg.request("GET", "/v2/", None, &[]).unwrap().0, 401);
    }
}
