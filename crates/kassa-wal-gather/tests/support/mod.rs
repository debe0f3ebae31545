//! The test VFS under the gathering one, from the crate's `test-vfs` feature (the tests
//! enable it through the crate's dev-dependency on itself).

pub use kassa_wal_gather::test_vfs::*;
