//! Image suite against real peers: `pull` calls `libimage::pull` directly, `cli` drives
//! roci's image commands. Each test starts its own registry ([`roci_integration::registry`]) and uses
//! its own image root in a temp dir; both are gone when the test ends.

mod cli;
mod pull;
