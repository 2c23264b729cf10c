//! An agent started with `--dev`, as a newcomer starts it, and what its
//! banner tells: the demo services, the event history, the admin API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A `warden agent --dev`, stopped (and its data directory removed) if the
/// test ends before it was.
pub struct DevAgent {
    child: Child,
    /// The demo services as the banner lists them: name and address.
    pub services: Vec<(String, SocketAddr)>,
    /// The event history file.
    pub history: PathBuf,
    /// `http://ADDRESS` of the admin API, as the banner's export line says.
    pub api: String,
    /// The admin API's token, read from the file the banner names.
    pub token: String,
    /// The banner's lines as printed, up to the `Try:` line that ends it.
    pub banner: Vec<String>,
}

impl DevAgent {
    /// Start `command` (which runs `warden agent --dev`, itself or through
    /// `exec`), read its banner up to the line that ends it, and wait until
    /// the agent has started.
    pub fn spawn(mut command: Command) -> DevAgent {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the dev agent");
        let stdout = child.stdout.take().expect("stdout");
        let mut agent = DevAgent {
            child,
            services: Vec::new(),
            history: PathBuf::new(),
            api: String::new(),
            token: String::new(),
            banner: Vec::new(),
        };
        let mut banner = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("the banner");
            banner.push(line.clone());
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("resource ") {
                let (name, url) = rest.split_once(": ").expect("name: url");
                // `http://ADDR/`, or another scheme (`smtp://ADDR`).
                let addr: SocketAddr = url
                    .split_once("://")
                    .map_or(url, |(_, rest)| rest)
                    .trim_end_matches('/')
                    .parse()
                    .expect("address");
                agent.services.push((name.to_string(), addr));
            }
            if let Some(path) = line.strip_prefix("event history:") {
                agent.history = PathBuf::from(path.trim());
            }
            if let Some(rest) = line.strip_prefix("export WARDEN_API=") {
                let (api, token) = rest
                    .split_once(" WARDEN_TOKEN=$(cat ")
                    .expect("the export line names the token file");
                agent.api = api.to_string();
                let file = token.trim_end_matches(')');
                agent.token = std::fs::read_to_string(file)
                    .expect("the token file")
                    .trim()
                    .to_string();
            }
            if line.starts_with("Try:") {
                break;
            }
        }
        assert!(
            !agent.api.is_empty() && !agent.services.is_empty(),
            "the dev banner lacks the admin API or the services: {banner:#?}"
        );
        agent.banner = banner;
        // The banner comes before the start; the API answers from the
        // start's progress until the node runs (503 to anything else).
        let api: SocketAddr = agent
            .api
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the admin API's address");
        super::wait_until(
            "the dev agent to have started",
            Duration::from_secs(60),
            || super::agent_process::has_started(api, &agent.token),
        );
        agent
    }

    /// The address of the demo service `name`.
    pub fn service(&self, name: &str) -> SocketAddr {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no demo service {name:?} in {:?}", self.services))
    }

    /// The variables the banner tells the operator to export.
    pub fn cli_env(&self) -> [(&'static str, String); 2] {
        [
            ("WARDEN_API", self.api.clone()),
            ("WARDEN_TOKEN", self.token.clone()),
        ]
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `signal` and wait (20 s at most) for the agent to exit.
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        let _ = kill(Pid::from_raw(self.pid()), signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop after {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn data_dir(&self) -> Option<&Path> {
        self.history.parent()
    }
}

impl Drop for DevAgent {
    /// Stop the agent as an operator does, SIGTERM, so that it stops its
    /// services (a SIGKILL would leave them running, adoptable, and a test
    /// that ends without stopping its agent would leak them); SIGKILL only
    /// when it has not exited 10 s later.
    fn drop(&mut self) {
        super::process::stop_gently(&mut self.child);
        if let Some(dir) = self.data_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// GET / from a demo service; returns the body.
pub fn http_get(addr: SocketAddr) -> Option<String> {
    http_get_path(addr, "/")
}

/// GET `path` from a service; returns the body of a 200 answer.
pub fn http_get_path(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.split(' ').nth(1).filter(|status| *status == "200")?;
    Some(body.to_string())
}

/// The pid a demo service names in its answer.
pub fn pid_in(body: &str) -> i32 {
    body.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}
