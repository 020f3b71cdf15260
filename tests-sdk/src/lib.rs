//! Integration tests live in `tests/`; this crate only holds their dependencies.
