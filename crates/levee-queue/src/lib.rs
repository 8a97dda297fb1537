//! levee-queue: durable SQS-compatible queues for Levee.
//!
//! Owns: the queue store in `data_dir/queues.db` ([`Queues`]: SQLite WAL,
//! one writer thread that group-commits every mutation), the SQS JSON API
//! ([`sqs_router`]), the Lambda SQS event and partial-batch-response rules
//! ([`event`]) and the event-source pollers that feed functions
//! ([`start_pollers`]). Must never: acknowledge a message (to a sender, or as
//! deleted to a consumer) before its transaction has committed, hold message
//! bodies in memory beyond the batch being served, grow a queue past its
//! `max_messages`, or depend on the runtime crate (functions are reached
//! through the [`Invoker`] trait).
//!
//! # Durability (the fsync policy)
//! Every mutation is committed before its caller hears "ok". The writer
//! connection runs `journal_mode=WAL` with `synchronous=NORMAL`: a commit is
//! a `write(2)` of the transaction's pages to `queues.db-wal`, which the
//! kernel keeps across a process crash, so an acknowledged message survives
//! `kill -9` at any instant and a deleted one is never redelivered after a
//! restart. The WAL is fsynced only when SQLite checkpoints it into the main
//! file (automatically every ~1000 pages, and on close), so an operating
//! system crash or power cut can roll back the commits made since the last
//! checkpoint; fsyncing each group commit would cost a disk flush per batch
//! for protection against a failure this project does not promise to
//! survive.

pub mod api;
mod db;
pub mod digest;
pub mod error;
pub mod event;
pub mod model;
pub mod moves;
pub mod poller;
pub mod query;
mod queues;
mod recent;
mod writer;

pub use api::sqs_router;
pub use error::QueueError;
pub use levee_common::clock::{Clock, ManualClock, SystemClock};
pub use model::{
    AttributeValue, MessageAttribute, MessageAttributes, NewMessage, PeekedMessage, QueueInfo,
    QueueSettings, ReceiveOptions, ReceivedMessage, Redrive, SentMessage,
};
pub use poller::{start_pollers, EventSource, InvokeResult, Invoker, PollerHandle};
pub use queues::{Queues, DB_FILE, LOCK_FILE};
