//! Run directories and checkpoints: the lock, atomic checkpoint directories, and the
//! (de)serialization of model, EMA, optimizer and training state.

pub mod lock;
pub mod store;

pub use lock::RunLock;
pub use store::{CHECKPOINTS_DIR, checkpoint_name, latest_checkpoint, list_checkpoints};
