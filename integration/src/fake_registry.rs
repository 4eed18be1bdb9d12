//! A misbehaving HTTP server for the registry failure cases a real registry will not
//! produce: answering 500, never answering (hanging), or serving a manifest over the
//! size limit. It listens on 127.0.0.1:<port> inside the test's namespace.
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::NetNs;

/// How the server answers every request except `GET /v2/` (200).
#[derive(Clone)]
pub enum Behaviour {
    Status(u16),
    /// Accept and never answer (the connection stays open until the server stops).
    Hang,
    /// 200 with this body as an OCI manifest.
    Manifest(Vec<u8>),
}

pub struct FakeRegistry {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    pub fn start(netns: &NetNs, port: u16, behaviour: Behaviour) -> FakeRegistry {
        let listener = crate::registry::in_netns(netns, || TcpListener::bind(("127.0.0.1", port)).expect("bind the fake registry"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || serve(listener, &behaviour, &thread_stop));
        FakeRegistry { stop, thread: Some(thread) }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, behaviour: &Behaviour, stop: &AtomicBool) {
    let mut held = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if let Ok(Some(hung)) = answer(stream, behaviour) {
                    held.push(hung);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Answers one request; returns the stream when it is to be left hanging.
fn answer(stream: TcpStream, behaviour: &Behaviour) -> std::io::Result<Option<TcpStream>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let mut stream = stream;
    if path == "/v2/" {
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")?;
        return Ok(None);
    }
    match behaviour {
        Behaviour::Hang => return Ok(Some(stream)),
        Behaviour::Status(code) => {
            write!(stream, "HTTP/1.1 {code} Failure\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        }
        Behaviour::Manifest(body) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
        }
    }
    Ok(None)
}
