//! Small, real mail services for Warden's built-in resource types to supervise.
//!
//! An Exchange virtual server is a handful of services that depend on each
//! other: the Store, SMTP, HTTP, the MTA and MS Search. Warden's built-in
//! resource types (WebAssembly plugins) start, stop and health-check such
//! services; to test them end to end they need something real to supervise.
//! These are that something: five std-only programs, each a few hundred
//! lines, that together carry a message from an SMTP client to disk, into a
//! search index and out over HTTP.
//!
//! | binary         | plays the part of | state on disk                 |
//! |----------------|-------------------|-------------------------------|
//! | `mail-store`   | Store (database)  | write-ahead log + CLEAN marker|
//! | `mail-smtp`    | SMTP instance     | none (writes through)         |
//! | `mail-http`    | HTTP instance     | none (reads through)          |
//! | `mail-mta`     | MTA               | fsync'ed queue directory      |
//! | `mail-indexer` | MS Search         | inverted index file           |
//! | `mail-attendant` | System Attendant | none (watches the others)   |
//!
//! The library holds what more than one binary needs, one concern a module,
//! and each binary's `main` in [`programs`], so that another binary (the
//! `warden` agent's Exchange demo) can run them as subcommands.
//! Every wire format is documented in `README.md` next to this crate; that
//! file is the contract plugin authors code against.

#[macro_use]
pub mod log;

pub mod args;
pub mod checksum;
pub mod fsutil;
pub mod http;
pub mod index;
pub mod lineio;
pub mod mailbox;
pub mod programs;
pub mod queue;
pub mod replication;
pub mod server;
pub mod signals;
pub mod smtp;
pub mod store;
pub mod store_client;
pub mod wal;
