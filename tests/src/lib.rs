//! End-to-end and backend-parity tests live in `tests/tests/`; this crate has no library code.
