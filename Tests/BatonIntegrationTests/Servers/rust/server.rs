// A Rust HTTP server as Baton runs it (Docs/wrapping.md; tested by
// ThirdPartyServerTests.rustServerTakesFd3), with the standard library only. Its
// listener is the socket Baton passes at fd 3; it says READY=1 on NOTIFY_SOCKET as it
// starts serving; SIGTERM drains it. Build it (Rust 1.63, Debian 12's, or later): rustc -O -o server server.rs
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::FromRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

static DRAINING: AtomicBool = AtomicBool::new(false);
const SIGTERM: i32 = 15;

extern "C" {
    // The standard library has no signal handling; libc's signal() is all this needs.
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

extern "C" fn on_sigterm(_: i32) {
    DRAINING.store(true, Ordering::SeqCst);
}

fn main() {
    // SAFETY: Baton passes the listening socket at fd 3 and nothing else owns it.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    // Nonblocking, so that the accept loop sees a drain that began while it waited.
    listener.set_nonblocking(true).expect("fd 3 is a listening socket");
    unsafe { signal(SIGTERM, on_sigterm) };
    let active = Arc::new(AtomicUsize::new(0));
    notify("READY=1");

    let mut drain_began: Option<Instant> = None;
    loop {
        if DRAINING.load(Ordering::SeqCst) && drain_began.is_none() {
            drain_began = Some(Instant::now());
        }
        // Whatever reached the socket before its drain signal is still taken for a
        // second; then the listener closes and the server waits for its connections.
        if drain_began.map_or(false, |began| began.elapsed() > Duration::from_secs(1)) {
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let active = Arc::clone(&active);
                active.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    serve(stream);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(error) => eprintln!("accept: {error}"),
        }
    }
    drop(listener);
    while active.load(Ordering::SeqCst) > 0 {
        thread::sleep(Duration::from_millis(10));
    }
}

/// Answers HTTP/1.1 requests on one connection until the client closes it, or, once the
/// server drains, after one more answer (with `Connection: close`) or a second of idleness.
fn serve(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let body = "served by Rust\n";
    let pid = std::process::id();
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut idle_since_drain: Option<Instant> = None;
    loop {
        while let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let draining = DRAINING.load(Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Pid: {}\r\n{}\r\n{}",
                body.len(),
                pid,
                if draining { "Connection: close\r\n" } else { "" },
                body
            );
            if stream.write_all(answer.as_bytes()).is_err() || draining {
                return;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(count) => {
                pending.extend_from_slice(&buffer[..count]);
                idle_since_drain = None;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock || error.kind() == ErrorKind::TimedOut => {
                if DRAINING.load(Ordering::SeqCst) && pending.is_empty() {
                    let since = *idle_since_drain.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(1) {
                        return;
                    }
                }
            }
            Err(_) => return,
        }
    }
}

/// Sends one sd_notify message to NOTIFY_SOCKET, if there is one.
fn notify(state: &str) {
    let path = match std::env::var("NOTIFY_SOCKET") {
        Ok(path) => path,
        Err(_) => return,
    };
    match UnixDatagram::unbound().and_then(|socket| socket.send_to(state.as_bytes(), &path)) {
        Ok(_) => {}
        Err(error) => eprintln!("NOTIFY_SOCKET: {error}"),
    }
}
