//! Shared set-up for the host's integration tests: one runtime, the plugins
//! built from `plugins/` by build.rs, and small helpers to run resources.
#![allow(dead_code)]

pub mod agent_process;
pub mod cli;
pub mod cluster;
pub mod dev_agent;
pub mod dns_server;
pub mod fake_watchdog;
pub mod http_server;
pub mod lab_cluster;
pub mod mail_client;
pub mod many_groups;
pub mod netlab;
pub mod nginx;
pub mod ports;
pub mod process;
pub mod redfish;
pub mod store_copies;
pub mod systemd;
pub mod virtual_server;
pub mod webdriver;

// Not every binary that includes this module uses each of them.
#[allow(unused_imports)]
pub use ports::{free_address, free_port, service_ports};

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use warden::monitor::{Monitor, ResourceHandle, ResourceSpec, ResourceState, TimingOverrides};
use warden::runtime::{
    Grants, Instance, InstanceConfig, Plugin, ResourceContext, ResourceDirs, Runtime, RuntimeConfig,
};

/// One runtime for the whole test binary: engines reserve address space for
/// their instance pool, so tests share it rather than build one each.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(RuntimeConfig {
                max_instances: 256,
                max_memory_bytes: 256 << 20,
                ..RuntimeConfig::default()
            })
            .expect("runtime")
        })
        .clone()
}

pub const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");
pub const PROCESS: &str = env!("WARDEN_PLUGIN_PROCESS");
pub const DESCRIBE_TRAPS: &str = env!("WARDEN_PLUGIN_DESCRIBE_TRAPS");
pub const FUTURE_CONTRACT: &str = env!("WARDEN_PLUGIN_FUTURE_CONTRACT");

pub async fn load(path: &str) -> Arc<Plugin> {
    let bytes = std::fs::read(path).expect("plugin file");
    Arc::new(
        Plugin::load(&runtime(), &bytes)
            .await
            .expect("plugin loads"),
    )
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A resource spec with short timers, suitable for tests.
pub fn spec(name: &str, props: &[(&str, &str)]) -> ResourceSpec {
    ResourceSpec {
        name: name.to_string(),
        type_name: String::new(),
        properties: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timing: TimingOverrides {
            pending_timeout: Some(ms(500)),
            looks_alive_interval: Some(ms(100)),
            is_alive_interval: Some(ms(150)),
            check_timeout: Some(ms(300)),
            terminate_timeout: Some(ms(300)),
        },
        memory_limit: Some(32 << 20),
        dirs: ResourceDirs::inside(&data_dir()),
        grants: Grants::default(),
    }
}

/// The directories of a resource whose plugin sees `data` as `/data`; the
/// agent's private files go to a sibling the plugin cannot reach.
pub fn dirs_at(data: &std::path::Path) -> ResourceDirs {
    ResourceDirs {
        data: data.to_path_buf(),
        private: data.with_extension("private"),
    }
}

pub fn data_dir() -> PathBuf {
    let dir = tempfile::tempdir().expect("tempdir");
    dir.keep()
}

/// Wait until the resource is in `state`, or panic with its status.
pub async fn wait_state(handle: &ResourceHandle, state: ResourceState, within: Duration) {
    if handle
        .wait_for(within, |s| s.state == state)
        .await
        .is_none()
    {
        panic!(
            "{} did not reach {state} within {within:?}: {:?}",
            handle.name(),
            handle.status()
        );
    }
}

/// A resource of the plugin file `plugin` added to `monitor` as `spec`
/// says and brought Online (within 10 s, or the test fails).
pub async fn online_resource(
    monitor: &mut Monitor,
    plugin: &str,
    spec: ResourceSpec,
) -> ResourceHandle {
    let handle = monitor
        .add(load(plugin).await, spec)
        .await
        .expect("valid spec");
    handle.online().expect("actor runs");
    wait_state(&handle, ResourceState::Online, Duration::from_secs(10)).await;
    handle
}

/// A monitor with one chaos resource online.
pub async fn online_chaos(
    monitor: &mut Monitor,
    name: &str,
    props: &[(&str, &str)],
) -> ResourceHandle {
    online_resource(monitor, CHAOS, spec(name, props)).await
}

/// A sandbox for the chaos resource `name` with `properties` in `dir`, as
/// the agent builds one at start (no grants, default limits), driven
/// directly rather than by a monitor. Its cancel channel is closed: its
/// calls are bounded by their deadlines alone.
pub async fn chaos_instance(
    name: &str,
    dir: &std::path::Path,
    properties: &[(&str, &str)],
) -> Instance {
    plugin_instance(CHAOS, name, dir, properties).await
}

/// A sandbox, as [`chaos_instance`] builds one, for the resource `name` of
/// the plugin built at `path`.
pub async fn plugin_instance(
    path: &str,
    name: &str,
    dir: &std::path::Path,
    properties: &[(&str, &str)],
) -> Instance {
    instance_granted(path, name, dir, properties, false).await
}

/// [`plugin_instance`] whose configured properties are also its grants, as
/// the agent gives a resource its configured addresses to connect to.
pub async fn configured_instance(
    path: &str,
    name: &str,
    dir: &std::path::Path,
    properties: &[(&str, &str)],
) -> Instance {
    instance_granted(path, name, dir, properties, true).await
}

async fn instance_granted(
    path: &str,
    name: &str,
    dir: &std::path::Path,
    properties: &[(&str, &str)],
    grant_configured: bool,
) -> Instance {
    // Nothing cancels these instances' calls: the sender goes at once.
    let (_cancel, cancel) = watch::channel(0);
    instance_of(
        load(path).await,
        name,
        dir,
        properties,
        grant_configured,
        cancel,
    )
}

/// An instance of `plugin` (loaded into whatever runtime the test chose)
/// for the resource `name` with its directories under `dir`;
/// `grant_configured`: the properties grant what they name; `cancel`: as
/// the monitor's actor holds it.
pub fn instance_of(
    plugin: Arc<Plugin>,
    name: &str,
    dir: &std::path::Path,
    properties: &[(&str, &str)],
    grant_configured: bool,
    cancel: watch::Receiver<u64>,
) -> Instance {
    let (exits, _) = mpsc::unbounded_channel();
    let dirs = dirs_at(dir);
    dirs.create().expect("resource directories");
    let properties: Vec<(String, String)> = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let grants = Grants {
        configured: if grant_configured {
            properties.clone()
        } else {
            Vec::new()
        },
        ..Grants::default()
    };
    let context = ResourceContext::new(name, plugin.name(), grants, dirs, exits);
    Instance::new(
        plugin,
        context,
        properties,
        InstanceConfig::default(),
        cancel,
    )
}

/// Poll `probe` until it gives a value, or fail naming `what`.
pub fn wait_until<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory with the mail services' binaries (`examples/mail-services`,
/// next to the test executable's target dir), building them if needed.
pub fn mail_services() -> PathBuf {
    // target/<profile>/deps/<test>-<hash> -> target/<profile>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .to_path_buf();
    const BINS: [&str; 5] = [
        "mail-store",
        "mail-smtp",
        "mail-http",
        "mail-indexer",
        "mail-mta",
    ];
    if BINS.iter().any(|bin| !dir.join(bin).exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "warden-mail-services", "--bins"])
            .status()
            .expect("run cargo");
        assert!(
            status.success(),
            "building the mail services failed: is examples/mail-services a workspace member?"
        );
    }
    for bin in BINS {
        assert!(
            dir.join(bin).exists(),
            "{} is missing",
            dir.join(bin).display()
        );
    }
    dir
}

/// A server of the test's own on 127.0.0.1 that runs `serve` on each
/// connection it accepts, on a thread of its own: a peer that answers as
/// the test wants (silent, flooding, malformed). Its address.
pub fn tcp_server(
    serve: impl Fn(std::net::TcpStream) + Send + Sync + Clone + 'static,
) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    address
}
