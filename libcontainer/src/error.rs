//! The crate's error type: each module's error folded into one enum.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cgroups(#[from] crate::cgroups::Error),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
    #[error(transparent)]
    ImageBundle(#[from] crate::image_bundle::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
