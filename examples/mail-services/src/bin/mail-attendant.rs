//! `mail-attendant`: see [`warden_mail_services::programs::attendant`].

fn main() {
    warden_mail_services::programs::attendant::main(std::env::args().skip(1))
}
