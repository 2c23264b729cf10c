//! `mail-store`: see [`warden_mail_services::programs::store`].

fn main() {
    warden_mail_services::programs::store::main(std::env::args().skip(1))
}
