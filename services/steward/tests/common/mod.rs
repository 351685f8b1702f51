//! Helpers of the binary's process tests: spawning `steward`, waiting for readiness,
//! signals, a tiny HTTP client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_steward");

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

pub fn wait_ready(addr: SocketAddr, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("steward exited before it was ready: {status}");
        }
        if let Some((200, body)) = http_get(addr, "/readyz") {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("steward did not become ready within 60 s");
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("steward did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A spawned steward whose stderr goes to a file (a pipe nobody reads would fill up and
/// block the process on its next log line).
pub struct Running {
    pub child: Child,
    pub log: tempfile::NamedTempFile,
}

impl Running {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// A test that ends (or fails) takes its steward with it: a process left running would keep
/// polling servers that are gone, for as long as the machine runs.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn spawn(cmd: &mut Command) -> Running {
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = cmd
        .stderr(Stdio::from(log.reopen().unwrap()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Running { child, log }
}

pub fn steward(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("STEWARD_CONFIG")
        .env_remove("STEWARD_NATS_URL")
        .env_remove("STEWARD_DATABASE_URL")
        .env_remove("RUST_LOG");
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}
