//! docker in front of the runtime under test.
