pub mod cli;
pub mod receivers;
