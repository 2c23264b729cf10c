//! `mail-smtp`: see [`warden_mail_services::programs::smtp`].

fn main() {
    warden_mail_services::programs::smtp::main(std::env::args().skip(1))
}
