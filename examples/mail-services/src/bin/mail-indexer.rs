//! `mail-indexer`: see [`warden_mail_services::programs::indexer`].

fn main() {
    warden_mail_services::programs::indexer::main(std::env::args().skip(1))
}
