//! Email providers behind the `EmailSender` port.

mod console;

pub use console::ConsoleEmailSender;
