//! `mail-http`: see [`warden_mail_services::programs::http`].

fn main() {
    warden_mail_services::programs::http::main(std::env::args().skip(1))
}
