//! What rkube knows about the Kubernetes API itself: which resources exist
//! (the registry behind discovery), how label and field selectors read and
//! match, how names and metadata are validated, and how objects print as
//! Table rows. Objects are handled as JSON values (`serde_json::Value`), as
//! the API server stores and serves them.
//!
//! This crate does no I/O: no HTTP, no store, no clock (callers pass `now`).

pub mod convert;
pub mod cron;
pub mod duration;
pub mod fields;
pub mod image;
pub mod kinds;
pub mod openapi;
pub mod qos;
pub mod quantity;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod spec_validation;
pub mod table;
pub mod validation;
