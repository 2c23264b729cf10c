//! `mail-mta`: see [`warden_mail_services::programs::mta`].

fn main() {
    warden_mail_services::programs::mta::main(std::env::args().skip(1))
}
