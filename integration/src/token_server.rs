//! A small token server for the registry's bearer-token flow (the Docker distribution
//! token spec): on 127.0.0.1:5001 inside the test's namespace, it checks HTTP basic
//! credentials and answers `GET /token?service=..&scope=repository:NAME:ACTIONS` with a
//! JWT signed (RS256, `openssl dgst`) by a key whose self-signed certificate the
//! registry trusts. Unknown or missing credentials get a token without access (anonymous)
//! or 401 (wrong password).
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::command::sh;
use crate::netns::NetNs;

pub const ISSUER: &str = "berth-test-issuer";
pub const SERVICE: &str = "berth-test-registry";

pub struct TokenServer {
    signer: Signer,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The key and certificate tokens are signed with.
#[derive(Clone)]
struct Signer {
    key: PathBuf,
    certificate_der: String,
}

impl TokenServer {
    /// Makes a key and certificate in `dir` (`token.key`, `token.crt`, which the
    /// registry's config names) and starts serving.
    pub fn start(netns: &NetNs, dir: &Path, username: &str, password: &str) -> TokenServer {
        let d = dir.display();
        sh(&format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout {d}/token.key -out {d}/token.crt -days 2 -subj /CN=berth-test-token 2>&1 && \
             openssl x509 -in {d}/token.crt -outform DER -out {d}/token.der"
        ))
        .ok();
        let der = std::fs::read(dir.join("token.der")).expect("token.der");
        let signer = Signer { key: dir.join("token.key"), certificate_der: STANDARD.encode(der) };
        let listener = crate::registry::in_netns(netns, || TcpListener::bind("127.0.0.1:5001").expect("bind the token server"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("Basic {}", STANDARD.encode(format!("{username}:{password}")));
        let (thread_signer, thread_stop) = (signer.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(listener, &thread_signer, &expected, &thread_stop));
        TokenServer { signer, stop, thread: Some(thread) }
    }

    /// A token with every action on `repository` (for the harness's own uploads).
    pub fn admin_token(&self, repository: &str) -> String {
        self.signer.token(&[(repository.to_string(), vec!["pull".into(), "push".into(), "delete".into()])])
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, signer: &Signer, expected_auth: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = answer(stream, signer, expected_auth);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn answer(stream: TcpStream, signer: &Signer, expected_auth: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match authorization.as_deref() {
        Some(given) if given != expected_auth => ("401 Unauthorized", r#"{"details":"wrong credentials"}"#.to_string()),
        Some(_) => ("200 OK", token_body(signer, &requested_access(target))),
        None => ("200 OK", token_body(signer, &[])),
    };
    let mut stream = stream;
    write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn token_body(signer: &Signer, access: &[(String, Vec<String>)]) -> String {
    let token = signer.token(access);
    format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#)
}

/// `(repository, actions)` from the `scope` query parameters.
fn requested_access(target: &str) -> Vec<(String, Vec<String>)> {
    let query = target.split_once('?').map(|(_, query)| query).unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .map(|scope| scope.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/"))
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "repository").then(|| (name.to_string(), actions.split(',').map(str::to_string).collect()))
        })
        .collect()
}

impl Signer {
    fn token(&self, access: &[(String, Vec<String>)]) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.certificate_der]});
        let access: Vec<serde_json::Value> = access
            .iter()
            .map(|(name, actions)| serde_json::json!({"type": "repository", "name": name, "actions": actions}))
            .collect();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "berth-test", "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(self.sign(signing_input.as_bytes())))
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let mut child = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-binary", "-sign"])
            .arg(&self.key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl dgst");
        child.stdin.take().expect("stdin").write_all(input).expect("write to openssl");
        let out = child.wait_with_output().expect("openssl output");
        assert!(out.status.success(), "openssl dgst failed");
        out.stdout
    }
}
