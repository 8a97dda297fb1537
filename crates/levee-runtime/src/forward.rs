//! `forward = ["127.0.0.1:5432"]`: a host service reachable at the same
//! address inside an instance's otherwise empty network.
//!
//! Owns the listeners bound inside the instance's namespace and the copy
//! between each accepted connection and a connection Levee opens from the
//! host's namespace. Must never forward anywhere but the address the
//! listener stands for, and never hold more than [`MAX_CONNECTIONS`] per
//! instance.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections through one instance's forwards at once; more wait in the
/// listener's backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// The forwarders of one instance; dropping it closes every listener and
/// connection.
#[derive(Debug, Default)]
pub(crate) struct Forwards {
    _tasks: Option<JoinSet<()>>,
}

/// Serves each `(listener inside the instance, host address)` pair.
pub(crate) fn start(listeners: Vec<(std::net::TcpListener, SocketAddr)>) -> Forwards {
    if listeners.is_empty() {
        return Forwards::default();
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    for (listener, target) in listeners {
        let converted = listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener));
        match converted {
            Ok(listener) => {
                tasks.spawn(serve(listener, target, Arc::clone(&slots)));
            }
            Err(e) => tracing::warn!(%target, error = %e, "forward listener unusable"),
        }
    }
    Forwards {
        _tasks: Some(tasks),
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, slots: Arc<Semaphore>) {
    // Connection tasks live in the set, so dropping this task ends them all.
    let mut connections = JoinSet::new();
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((mut inside, _)) = accepted else {
            continue;
        };
        connections.spawn(async move {
            let _permit = permit;
            // Dialled from a worker thread, which is in the host's network.
            if let Ok(mut host) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut host).await;
            }
        });
    }
}
