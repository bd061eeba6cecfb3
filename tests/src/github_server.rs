//! A stand-in for the GitHub REST API: a small HTTP/1.1 responder on
//! 127.0.0.1 (port 0), with canned answers per request target, recording
//! every request. The real client (`runner_metrics::github`) talks to it
//! over a real socket; nothing is mocked inside the client.
//!
//! Bounded: one connection at a time, one request per connection
//! (`Connection: close`), requests of at most 64 KiB, 5 s read timeouts,
//! at most [`MAX_REQUESTS`] answered; the thread ends when the server is
//! dropped.
//!
//! [`BlackHole`] is the API that accepts connections and never answers.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests answered per server, at most.
pub const MAX_REQUESTS: usize = 200;

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (for timeouts).
    pub delay: Duration,
}

impl Answer {
    pub fn json(body: impl Into<String>) -> Self {
        Self { status: 200, headers: Vec::new(), body: body.into(), delay: Duration::ZERO }
    }

    pub fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: r#"{"message": "canned"}"#.to_owned(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }
}

type Routes = Arc<Mutex<HashMap<String, VecDeque<Answer>>>>;

/// The server; dropped, it stops.
pub struct GithubServer {
    port: u16,
    routes: Routes,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Default for GithubServer {
    fn default() -> Self {
        Self::start()
    }
}

impl GithubServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let routes: Routes = Arc::default();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming().take(MAX_REQUESTS) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &routes, &requests);
                    }
                }
            })
        };
        Self { port, routes, requests, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers for `target` (path and query), one per request in order; the
    /// last one is repeated. Targets without answers get a 404.
    pub fn route(&self, target: &str, answers: Vec<Answer>) {
        self.routes.lock().unwrap().insert(target.to_owned(), answers.into());
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for GithubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, routes: &Routes, requests: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        if buffer.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&buffer);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    requests.lock().unwrap().push(Request { method, target: target.clone(), headers });
    let answer = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&target) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        }
    }
    .unwrap_or_else(|| Answer::status(404));
    std::thread::sleep(answer.delay);
    let mut response = format!(
        "HTTP/1.1 {} Canned\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&answer.body);
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Connections a [`BlackHole`] holds open at most (then it closes: a
/// runaway client gets refused connections instead of exhausting the test's
/// descriptors).
pub const BLACK_HOLE_MAX_CONNECTIONS: usize = 1000;

/// An "API" on 127.0.0.1 that accepts every connection and never reads or
/// answers: each request costs the client a full timeout. The accepted
/// sockets are kept open (a closed one would be a quick error, not a hang)
/// until the black hole is dropped.
pub struct BlackHole {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Default for BlackHole {
    fn default() -> Self {
        Self::start()
    }
}

impl BlackHole {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) || held.len() >= BLACK_HOLE_MAX_CONNECTIONS {
                        break;
                    }
                    if let Ok(stream) = stream {
                        held.push(stream);
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }
                drop(held);
            })
        };
        Self { port, accepted, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `command` without the proxy variables, so a request to a local server
/// (this module's, on 127.0.0.1) goes to it directly.
pub fn without_proxies(command: &mut std::process::Command) -> &mut std::process::Command {
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        command.env_remove(name);
    }
    command
}

/// The list-jobs target of a run's page, for the jobs of every attempt
/// (what the client asks for when the pre-job file names no attempt).
pub fn jobs_target(base_path: &str, repository: &str, run_id: &str, page: u32) -> String {
    format!("{base_path}/repos/{repository}/actions/runs/{run_id}/jobs?filter=all&per_page=100&page={page}")
}

/// The list-jobs target of one attempt of a run (what the client asks for
/// when the pre-job file names the attempt).
pub fn attempt_jobs_target(base_path: &str, repository: &str, run_id: &str, attempt: u32, page: u32) -> String {
    format!("{base_path}/repos/{repository}/actions/runs/{run_id}/attempts/{attempt}/jobs?per_page=100&page={page}")
}

/// A job as the list-jobs endpoint shows it (the fields we read, plus a few
/// we do not).
pub fn job(
    id: u64,
    runner_name: &str,
    created_at: &str,
    started_at: &str,
    conclusion: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "run_id": 4242,
        "status": "completed",
        "conclusion": conclusion,
        "created_at": created_at,
        "started_at": started_at,
        "completed_at": started_at,
        "name": format!("job {id}"),
        "steps": [{"name": "Set up job", "status": "completed", "conclusion": "success", "number": 1}],
        "labels": ["self-hosted"],
        "runner_id": id,
        "runner_name": runner_name,
    })
}

/// A list-jobs page.
pub fn jobs_page(total_count: usize, jobs: Vec<serde_json::Value>) -> String {
    serde_json::json!({"total_count": total_count, "jobs": jobs}).to_string()
}
