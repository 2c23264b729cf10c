//! Hand-rolled `--flag value` parsing.
//!
//! Why not clap: these services are std-only on purpose (they are the things
//! being supervised, so they should build anywhere in seconds and have nothing
//! to audit), and their command lines are a handful of `--name value` pairs.
//! The one contract a supervisor relies on: a bad command line never starts a
//! half-configured service; it prints `error: ...` and the usage to stderr and
//! exits with status 2 ([`USAGE_EXIT`]). `--help` prints the usage to stdout
//! and exits 0.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process;

/// Exit status for a bad command line (the BSD `EX_USAGE` tradition of 2).
pub const USAGE_EXIT: i32 = 2;

/// What a program accepts: its flags (name, takes a value?) and usage text.
pub struct Spec {
    pub program: &'static str,
    pub usage: &'static str,
    pub flags: &'static [(&'static str, bool)],
}

#[derive(Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// `--help` or `-h` was given.
    Help,
    /// The command line is wrong; the text says how.
    Usage(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Help => f.write_str("help requested"),
            ArgsError::Usage(m) => f.write_str(m),
        }
    }
}

fn usage(msg: impl Into<String>) -> ArgsError {
    ArgsError::Usage(msg.into())
}

/// A parsed command line.
#[derive(Debug)]
pub struct Args {
    program: &'static str,
    usage: &'static str,
    values: HashMap<&'static str, String>,
    switches: Vec<&'static str>,
}

impl Args {
    /// Parses `argv` (without the program name). `--flag value` and
    /// `--flag=value` are both accepted; a flag given twice is an error.
    pub fn parse<I>(spec: &Spec, argv: I) -> Result<Args, ArgsError>
    where
        I: IntoIterator<Item = String>,
    {
        let mut it = argv.into_iter();
        let mut values = HashMap::new();
        let mut switches = Vec::new();
        while let Some(arg) = it.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ArgsError::Help);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let Some(&(flag, takes_value)) = spec.flags.iter().find(|(f, _)| *f == name) else {
                return Err(usage(format!("unknown argument `{arg}`")));
            };
            if takes_value {
                let value = match inline {
                    Some(v) => v,
                    None => match it.next() {
                        Some(v) if !v.starts_with("--") => v,
                        _ => return Err(usage(format!("`{flag}` needs a value"))),
                    },
                };
                if value.is_empty() {
                    return Err(usage(format!("`{flag}` needs a non-empty value")));
                }
                if values.insert(flag, value).is_some() {
                    return Err(usage(format!("`{flag}` given twice")));
                }
            } else {
                if inline.is_some() {
                    return Err(usage(format!("`{flag}` takes no value")));
                }
                if switches.contains(&flag) {
                    return Err(usage(format!("`{flag}` given twice")));
                }
                switches.push(flag);
            }
        }
        Ok(Args {
            program: spec.program,
            usage: spec.usage,
            values,
            switches,
        })
    }

    /// Parses the process's own arguments; on error prints and exits 2, on
    /// `--help` prints the usage and exits 0.
    pub fn from_env_or_exit(spec: &Spec) -> Args {
        Args::from_iter_or_exit(spec, std::env::args().skip(1))
    }

    /// Parses `argv` (the arguments after the program's name) as
    /// [`Args::from_env_or_exit`] does: a program run as a subcommand of
    /// another binary (`warden mail-service store ...`) has its arguments
    /// after the subcommand's, not at the start of the process's.
    pub fn from_iter_or_exit<I>(spec: &Spec, argv: I) -> Args
    where
        I: IntoIterator<Item = String>,
    {
        match Args::parse(spec, argv) {
            Ok(args) => args,
            Err(ArgsError::Help) => {
                print!("{}", spec.usage);
                process::exit(0);
            }
            Err(ArgsError::Usage(msg)) => usage_exit(spec.program, spec.usage, &msg),
        }
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }

    pub fn required(&self, name: &str) -> Result<&str, ArgsError> {
        self.value(name)
            .ok_or_else(|| usage(format!("`{name}` is required")))
    }

    /// A socket address; host names are resolved once, now.
    pub fn addr(&self, name: &str) -> Result<Option<SocketAddr>, ArgsError> {
        self.value(name)
            .map(|v| resolve(v).map_err(|e| usage(format!("`{name} {v}`: {e}"))))
            .transpose()
    }

    pub fn number(&self, name: &str) -> Result<Option<u64>, ArgsError> {
        self.value(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| usage(format!("`{name} {v}`: not a non-negative integer")))
            })
            .transpose()
    }

    /// Prints `error: msg` and the usage, exits 2.
    pub fn fail(&self, msg: &str) -> ! {
        usage_exit(self.program, self.usage, msg)
    }

    fn or_exit<T>(&self, r: Result<T, ArgsError>) -> T {
        r.unwrap_or_else(|e| self.fail(&e.to_string()))
    }

    /// A required address, or exit 2.
    pub fn need_addr(&self, name: &str) -> SocketAddr {
        match self.addr(name) {
            Ok(Some(addr)) => addr,
            Ok(None) => self.fail(&format!("`{name}` is required")),
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// A required path, or exit 2.
    pub fn need_path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.or_exit(self.required(name)))
    }

    /// An optional number with a default and a floor, or exit 2.
    pub fn number_or(&self, name: &str, default: u64, min: u64) -> u64 {
        let n = self.or_exit(self.number(name)).unwrap_or(default);
        if n < min {
            self.fail(&format!("`{name} {n}`: must be at least {min}"));
        }
        n
    }

    /// An SMTP host name for banners: printable ASCII without spaces.
    pub fn hostname(&self, name: &str) -> String {
        match self.value(name) {
            Some(h) if h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()) => h.to_string(),
            Some(h) => self.fail(&format!("`{name} {h}`: not a valid host name")),
            None => default_hostname(),
        }
    }
}

fn usage_exit(program: &str, usage: &str, msg: &str) -> ! {
    eprint!("{program}: error: {msg}\n{usage}");
    process::exit(USAGE_EXIT)
}

/// Resolves `host:port` to its first address.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("not an address (expected HOST:PORT): {e}"))?;
    addrs
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
}

/// The variable naming the node a service runs on, for its banners, when
/// `--hostname` is not given.
pub const HOSTNAME_VAR: &str = "MAIL_HOSTNAME";

/// The host name for banners without `--hostname`: `MAIL_HOSTNAME` if set
/// (a cluster node's agent sets it per node, `[plugins.TYPE] env`, since
/// one virtual server's command line is the same on every node), else the
/// machine's host name (Linux), else `localhost`. A value that is not a
/// host name (empty, spaces, longer than 255) is passed over.
pub fn default_hostname() -> String {
    let valid =
        |h: &String| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic());
    std::env::var(HOSTNAME_VAR)
        .ok()
        .filter(valid)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(valid)
        })
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        program: "t",
        usage: "usage: t --listen ADDR [--verify]\n",
        flags: &[("--listen", true), ("--poll-ms", true), ("--verify", false)],
    };

    fn parse(v: &[&str]) -> Result<Args, ArgsError> {
        Args::parse(&SPEC, v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn accepts_both_spellings() {
        let a = parse(&["--listen", "127.0.0.1:1", "--poll-ms=5", "--verify"]).unwrap();
        assert_eq!(a.value("--listen"), Some("127.0.0.1:1"));
        assert_eq!(a.number("--poll-ms"), Ok(Some(5)));
        assert!(a.switch("--verify"));
        assert_eq!(
            a.addr("--listen").unwrap(),
            Some("127.0.0.1:1".parse().unwrap())
        );
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        let bad = |v: &[&str]| match parse(v) {
            Err(ArgsError::Usage(m)) => m,
            other => panic!("expected a usage error for {v:?}, got {other:?}"),
        };
        assert!(bad(&["--bogus"]).contains("unknown argument"));
        assert!(bad(&["--listen"]).contains("needs a value"));
        assert!(bad(&["--listen", "--verify"]).contains("needs a value"));
        assert!(bad(&["--listen=", "x"]).contains("non-empty"));
        assert!(bad(&["--listen", "a", "--listen", "b"]).contains("twice"));
        assert!(bad(&["--verify=yes"]).contains("takes no value"));
        assert_eq!(parse(&["-h"]).unwrap_err(), ArgsError::Help);
        let a = parse(&["--listen", "nonsense", "--poll-ms", "-3"]).unwrap();
        assert!(a.addr("--listen").is_err());
        assert!(a.number("--poll-ms").is_err());
        assert!(a.required("--data").is_err());
    }
}
