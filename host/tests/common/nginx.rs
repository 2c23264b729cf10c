//! Debian's nginx as the `http-instance` type runs it in the tests and the
//! benchmarks: everything in a directory of the test's, in the foreground.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Debian's nginx (`nginx-light`; `.ci/run` installs it).
pub const NGINX: &str = "/usr/sbin/nginx";

/// Write an nginx configuration into `dir` (pid file, logs and temporary
/// files all inside it; `daemon off`, one worker) listening on `address`;
/// its path. `GET /` answers 200 `warden nginx ok, worker PID`: the test
/// knows it is this nginx, the benchmark which worker answered.
pub fn nginx_config(dir: &Path, address: &str) -> PathBuf {
    nginx_config_with(
        dir,
        &[address],
        r#"location / { return 200 "warden nginx ok, worker $pid\n"; }"#,
    )
}

/// [`nginx_config`] listening on every address of `listen`, its server
/// holding `locations` (nginx's own syntax).
pub fn nginx_config_with(dir: &Path, listen: &[&str], locations: &str) -> PathBuf {
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    let listen: String = listen
        .iter()
        .map(|address| format!("        listen {address};\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            r#"daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
{listen}        {locations}
    }}
}}
"#
        ),
    )
    .expect("write nginx.conf");
    conf
}

/// Start nginx on configuration `conf` in the foreground, its error log in
/// `dir`, its output discarded. The caller waits for it to listen and
/// stops it with SIGTERM (`process::Stopped`), which takes its worker with
/// it; a SIGKILL of the master leaves the worker running.
pub fn spawn(dir: &Path, conf: &Path) -> Child {
    Command::new(NGINX)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt install nginx-light)")
}
