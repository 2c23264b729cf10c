//! A client of a virtual server on the network lab, and the judge of what
//! it saw: shared by the tests of a virtual address (`cluster/virtual_address.rs`,
//! `cluster/virtual_server.rs`) and the outage benchmark (`benches/vip_outage.rs`).
//!
//! From the lab's client host, a new probe starts every 100 ms, each on a
//! thread of its own (a probe waiting out a timeout never delays the next
//! one, so the times are the client's to 100 ms whatever answers or not).
//! A probe is one request a client would make ([`Probe`]): an HTTP GET of
//! the demo service on the virtual address, or one message sent over SMTP
//! to the virtual server found by its name at the lab's DNS server. Every
//! answer names the node that gave it (the demo service's working
//! directory, the SMTP banner), so [`judge`] can tell, from the client's
//! side alone, whether two nodes ever answered for the address, and how
//! long the client went without a good answer.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::cluster::{NODES, served_by};
use super::lab_cluster::CLIENT;
use super::netlab::{IFACE, Lab};
use super::wait_until;

/// The configuration every node gets for the virtual address: the
/// ip-address type's grant of the lab's subnet on its interface, and the
/// resource `name` in `group` holding [`VIP`] there, checked every 500 ms.
pub fn vip_config(name: &str, group: &str) -> String {
    format!(
        r#"
[plugins.ip-address.ip]
interfaces = ["{IFACE}"]
ranges = ["198.18.0.0/24"]

[[resource]]
name = "{name}"
type = "ip-address"
group = "{group}"
is_alive_interval_ms = 500
properties = {{ address = "{VIP}", prefix-length = {VIP_PREFIX}, interface = "{IFACE}", probe-ms = 300 }}
"#
    )
}

/// The virtual server's address in every lab test (inside the lab's
/// 198.18.0.0/24, above the hosts' own).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
/// Its prefix length.
pub const VIP_PREFIX: u8 = 24;
/// A new probe starts this often.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a probe waits for a connection; the SYN of a host that is gone
/// is not sent again within it (Linux's first retransmission is at 1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(900);
/// How long a probe waits for each answer once connected (a debug-build
/// service on a loaded 2-core machine, the store's fsync behind a 250).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a DNS query waits for its answer.
const DNS_TIMEOUT: Duration = Duration::from_millis(500);
const MINUTE: Duration = Duration::from_secs(60);

/// What the client asks of the virtual server.
#[derive(Debug, Clone)]
pub enum Probe {
    /// `GET /` of the demo service at this address; it answers with its
    /// working directory, which names its node.
    Http(SocketAddr),
    /// Look `name` up (an A record) at the DNS server `resolver`, connect
    /// to the answer's `port` and send one message over SMTP. The banner
    /// (`220 NODE ESMTP ...`) names the node; the message is good if the
    /// final dot is answered 250.
    Smtp {
        resolver: SocketAddr,
        name: String,
        port: u16,
    },
    /// As [`Probe::Smtp`], to this address directly (no DNS server).
    SmtpAt(SocketAddr),
}

/// One probe, as the client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The probe's number, unique in the test process (an SMTP probe's
    /// message says `probe N`).
    pub n: u64,
    /// When the probe started.
    pub started: Instant,
    /// Where the name led (SMTP; HTTP's address as given).
    pub address: Option<IpAddr>,
    /// When a node greeted the client, and which: the HTTP answer, the
    /// SMTP banner. `None`: nothing answered (or not as a node would).
    pub greeted: Option<(Instant, String)>,
    /// When the request was answered as a success (200, 250).
    pub good: Option<Instant>,
    /// What went wrong, if anything (for a failure's message).
    pub failure: Option<String>,
}

impl Answer {
    /// The node that answered with a success, and when.
    pub fn good_from(&self) -> Option<(Instant, &str)> {
        let (_, node) = self.greeted.as_ref()?;
        Some((self.good?, node.as_str()))
    }
}

/// Probes started so far by this process: each probe's number.
static PROBES: AtomicU64 = AtomicU64::new(0);

impl Probe {
    /// Run the probe once, under a number of its own (`Answer::n`).
    pub fn run(&self) -> Answer {
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut answer = Answer {
            n,
            started,
            address: None,
            greeted: None,
            good: None,
            failure: None,
        };
        match self {
            Probe::Http(address) => {
                answer.address = Some(address.ip());
                match served_by(*address) {
                    Some((node, _pid)) => {
                        let now = Instant::now();
                        answer.greeted = Some((now, node));
                        answer.good = Some(now);
                    }
                    None => answer.failure = Some(format!("no answer from {address}")),
                }
            }
            Probe::SmtpAt(server) => {
                answer.address = Some(server.ip());
                if let Err(why) = send_one_message(*server, n, &mut answer) {
                    answer.failure = Some(why);
                }
            }
            Probe::Smtp {
                resolver,
                name,
                port,
            } => {
                let outcome = lookup_a(*resolver, name).and_then(|found| {
                    let ip = found.ok_or_else(|| format!("{name} has no address"))?;
                    answer.address = Some(IpAddr::V4(ip));
                    send_one_message(SocketAddr::new(IpAddr::V4(ip), *port), n, &mut answer)
                });
                if let Err(why) = outcome {
                    answer.failure = Some(why);
                }
            }
        }
        answer
    }
}

/// How long the client probes before a change and after it: the answers
/// before it are the "before" of an outage (a killed agent's services die
/// at once), those after it show what `during` waited for.
pub const PROBE_AROUND: Duration = Duration::from_secs(1);

/// Run `during` while the client probes from the lab's client host every
/// [`PROBE_EVERY`], from [`PROBE_AROUND`] before `during` starts to as long
/// after it returned; what it returned and every answer, in the order the
/// probes started.
pub fn probing<T>(lab: &Lab, probe: &Probe, during: impl FnOnce() -> T) -> (T, Vec<Answer>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let prober = scope.spawn(|| lab.within(CLIENT, || probe_until(probe, &stop)));
        // Stops the prober also when `during` panics: the scope would
        // otherwise wait for it for ever.
        let stopping = StopOnDrop(&stop);
        std::thread::sleep(PROBE_AROUND);
        let result = during();
        std::thread::sleep(PROBE_AROUND);
        drop(stopping);
        let answers = prober
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (result, answers)
    })
}

/// Sets its flag when dropped, panicking or not.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Start a probe every [`PROBE_EVERY`] until `stop`, each on a thread of
/// its own (created by this one, so in its network namespace); every
/// answer once all have ended, in the order they started.
fn probe_until(probe: &Probe, stop: &AtomicBool) -> Vec<Answer> {
    let answers = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        while !stop.load(Ordering::Relaxed) {
            let tick = Instant::now();
            let answers = &answers;
            scope.spawn(move || {
                let answer = probe.run();
                answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(answer);
            });
            std::thread::sleep(PROBE_EVERY.saturating_sub(tick.elapsed()));
        }
    });
    let mut answers = answers.into_inner().unwrap_or_else(|e| e.into_inner());
    answers.sort_by_key(|a| a.started);
    answers
}

/// What the client saw across one change of owner.
#[derive(Debug)]
pub struct Verdict {
    /// The nodes that answered, in the order they greeted, each once.
    pub order: Vec<String>,
    /// From the last good answer of a node before `to` to `to`'s first.
    pub outage: Option<Duration>,
    /// How many requests were answered with a success (200, 250).
    pub good: usize,
    /// How many were not.
    pub failed: usize,
}

/// Judge the client's answers across a move to `to`: the nodes that
/// greeted, in the order of their greetings; panics if an earlier node
/// greeted again after a later one (two nodes answered for the address),
/// or if the last to greet is not `to`.
pub fn judge(answers: &[Answer], to: &str) -> Verdict {
    let mut greetings: Vec<(Instant, &str)> = answers
        .iter()
        .filter_map(|a| a.greeted.as_ref().map(|(at, node)| (*at, node.as_str())))
        .collect();
    greetings.sort_by_key(|(at, _)| *at);
    let mut order: Vec<String> = Vec::new();
    for (_, node) in greetings {
        if order.last().map(String::as_str) != Some(node) {
            assert!(
                !order.iter().any(|n| n == node),
                "{node} answered for the address again after {order:?}: two nodes answered"
            );
            order.push(node.to_string());
        }
    }
    assert_eq!(
        order.last().map(String::as_str),
        Some(to),
        "the last node to answer; answers in order: {order:?}"
    );
    let goods: Vec<(Instant, &str)> = answers.iter().filter_map(Answer::good_from).collect();
    let last_before = goods
        .iter()
        .filter(|(_, node)| *node != to)
        .map(|(at, _)| *at)
        .max();
    let first_of_to = goods
        .iter()
        .filter(|(_, node)| *node == to)
        .map(|(at, _)| *at)
        .min();
    Verdict {
        order,
        outage: first_of_to
            .zip(last_before)
            .map(|(first, last)| first.saturating_duration_since(last)),
        good: goods.len(),
        failed: answers.len() - goods.len(),
    }
}

/// Whether `host` has the virtual address on its interface (`ip addr`, not
/// the code under test).
pub fn holds(lab: &Lab, host: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", &lab.ns(host), "-o", "addr", "show", "dev", IFACE])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/{VIP_PREFIX} "))
}

/// The nodes that hold the virtual address now.
pub fn holders(lab: &Lab) -> Vec<&'static str> {
    NODES.into_iter().filter(|n| holds(lab, n)).collect()
}

/// Wait until exactly `node` holds the virtual address.
pub fn wait_held_by(lab: &Lab, node: &str) {
    wait_until(&format!("only {node} to hold {VIP}"), MINUTE, || {
        (holders(lab) == [node]).then_some(())
    });
}

/// Wait until the probe is answered with a success by a node `which`
/// accepts, seen from the client host; that node.
pub fn wait_answered(lab: &Lab, probe: &Probe, what: &str, which: impl Fn(&str) -> bool) -> String {
    wait_until(what, MINUTE, || {
        let answer = lab.within(CLIENT, || probe.run());
        answer
            .good_from()
            .map(|(_, node)| node.to_string())
            .filter(|node| which(node))
    })
}

/// Wait until the probe is answered with a success by `node`.
pub fn wait_served_by(lab: &Lab, probe: &Probe, node: &str) {
    wait_answered(
        lab,
        probe,
        &format!("{probe:?} to be answered by {node}"),
        |n| n == node,
    );
}

/// Node index of a name.
pub fn index(node: &str) -> usize {
    NODES
        .iter()
        .position(|n| *n == node)
        .unwrap_or_else(|| panic!("{node} is not a node"))
}

/// The A records of `name` at the DNS server `resolver`, asked as a client
/// asks (one plain query over UDP, built here with hickory, not with the
/// code under test): the first address, `None` for no such name or no
/// address; an error if the server did not answer or answered an error.
pub fn lookup_a(resolver: SocketAddr, name: &str) -> Result<Option<Ipv4Addr>, String> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect(resolver).map(|()| s))
        .map_err(|e| format!("a socket for {resolver}: {e}"))?;
    socket
        .set_read_timeout(Some(DNS_TIMEOUT))
        .map_err(|e| format!("a socket for {resolver}: {e}"))?;
    let fqdn = Name::from_ascii(name).map_err(|e| format!("{name:?} is no name: {e}"))?;
    let mut query = Message::query();
    query.add_query(Query::query(fqdn.clone(), RecordType::A));
    let bytes = query
        .to_vec()
        .map_err(|e| format!("the query for {name}: {e}"))?;
    socket
        .send(&bytes)
        .map_err(|e| format!("send to {resolver}: {e}"))?;
    let mut buffer = [0u8; 4096];
    loop {
        let size = socket
            .recv(&mut buffer)
            .map_err(|e| format!("no answer from {resolver} for {name}: {e}"))?;
        let Ok(answer) = Message::from_vec(&buffer[..size]) else {
            continue;
        };
        if answer.metadata.id != query.metadata.id
            || answer.metadata.message_type != MessageType::Response
        {
            continue;
        }
        return match answer.metadata.response_code {
            ResponseCode::NoError => Ok(answer
                .answers
                .iter()
                .filter(|record| record.name == fqdn)
                .find_map(|record| match &record.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })),
            ResponseCode::NXDomain => Ok(None),
            other => Err(format!("{resolver} answered {other} for {name}")),
        };
    }
}

/// One SMTP dialogue with the server at `server`: banner, EHLO, MAIL FROM,
/// RCPT TO, DATA, the message (`probe N`), QUIT. Records in `answer` who
/// greeted (the banner's host name, a node of the lab) and when the final
/// dot was answered 250.
fn send_one_message(server: SocketAddr, n: u64, answer: &mut Answer) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect to {server}: {e}"))?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(ANSWER_TIMEOUT)))
        .map_err(|e| format!("{server}: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| format!("{server}: {e}"))?);
    let mut writer = stream;
    let banner = reply(&mut reader, server)?;
    let node = banner
        .strip_prefix("220 ")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|node| NODES.contains(node))
        .ok_or_else(|| format!("{server}: a banner naming no node: {banner:?}"))?;
    answer.greeted = Some((Instant::now(), node.to_string()));
    let mut say = |line: &str, expect: &str| -> Result<String, String> {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("{server}: send {line:?}: {e}"))?;
        let got = reply(&mut reader, server)?;
        if got.starts_with(expect) {
            Ok(got)
        } else {
            Err(format!("{server} ({node}): {line:?} answered {got:?}"))
        }
    };
    say("EHLO client.test", "250")?;
    say("MAIL FROM:<probe@client.test>", "250")?;
    say("RCPT TO:<evs1-probe@mail.test>", "250")?;
    say("DATA", "354")?;
    say(
        &format!("Subject: probe {n}\r\n\r\n{}\r\n.", message_text(n)),
        "250",
    )?;
    answer.good = Some(Instant::now());
    // The message is accepted; whether QUIT is answered changes nothing.
    let _ = say("QUIT", "221");
    Ok(())
}

/// The text of probe `n`'s message, by which the store's copy is found.
pub fn message_text(n: u64) -> String {
    format!("probe {n} through the virtual server")
}

/// One SMTP reply, its last line (continuation lines `NNN-` skipped).
fn reply(reader: &mut impl BufRead, server: SocketAddr) -> Result<String, String> {
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("{server}: no answer: {e}"))?;
        if read == 0 {
            return Err(format!("{server} closed the connection"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

/// The numbers of the probes whose message the mail store at `address`
/// holds: every message (`SINCE 0`), each `SEQ MAILBOX LEN` header followed
/// by LEN bytes and a line end, and in each body the line
/// `message_text(N)`, wherever the server put it. Call it inside the lab
/// host that should ask.
pub fn stored_probes_at(address: SocketAddr) -> BTreeSet<u64> {
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect("the store");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    stream.write_all(b"SINCE 0\n").expect("ask the store");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("the store's answer");
    let count: usize = line
        .trim_end()
        .strip_prefix("MSGS ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("SINCE 0 answered {line:?}"));
    let mut found = BTreeSet::new();
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).expect("a message's header");
        let len: usize = line
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a message header {line:?}"));
        let mut body = vec![0; len + 1];
        reader.read_exact(&mut body).expect("a message's body");
        let body = String::from_utf8_lossy(&body);
        found.extend(body.lines().filter_map(|text| {
            let n = text
                .strip_prefix("probe ")?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            (text.trim_end() == message_text(n)).then_some(n)
        }));
    }
    found
}
