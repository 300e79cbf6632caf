//! The crate's error type: each module's error folded into one enum.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cgroups(#[from] crate::cgroups::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
