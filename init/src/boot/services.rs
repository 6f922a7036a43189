//! Every long-lived task PID 1 starts, in one value, and the order they
//! stop in. kata-containers' agent (`src/agent/src/main.rs`) keeps its
//! tasks the same way: one list, one shutdown channel.
//!
//! Stop order (docs/ARCHITECTURE.md, "Services"): the VIP elections first
//! (each removes its address, then resigns, so another node takes over
//! at once), then etcd (before the shutdown's SIGTERM sweep, which would
//! race the supervisor's restarts), then everything else (the network
//! manager, hotplug, the config loop), which hold no state worth a
//! goodbye.

use std::future::Future;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::controlplane::ControlPlane;

pub struct Services {
    shutdown: watch::Sender<bool>,
    /// Tasks that need no goodbye, in start order.
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    /// Starts etcd (it may wait for its address) and then the elections;
    /// its output is what [`Services::stop`] stops first.
    control_plane: Option<JoinHandle<Option<ControlPlane>>>,
}

impl Default for Services {
    fn default() -> Services {
        Services::new()
    }
}

impl Services {
    pub fn new() -> Services {
        Services {
            shutdown: watch::channel(false).0,
            tasks: Vec::new(),
            control_plane: None,
        }
    }

    /// Becomes true when the node starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Runs `task` until shutdown.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name, tokio::spawn(task)));
    }

    /// Starts the control plane (etcd, then the elections) in a task: etcd
    /// may wait for its address, and `ready` means PID 1's own boot is done.
    /// `start` gets the shutdown signal, which the elections watch.
    pub fn start_control_plane<F, Fut>(&mut self, start: F)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = Option<ControlPlane>> + Send + 'static,
    {
        if self.control_plane.is_some() {
            log::error!("control plane started twice; keeping the first");
            return;
        }
        self.control_plane = Some(tokio::spawn(start(self.shutdown_signal())));
    }

    /// Stops everything in order; see the module docs.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Some(cp) = self.control_plane {
            // Still waiting for its address: nothing was started yet, and
            // aborting leaves nothing behind. Done: abort is a no-op and
            // the await hands over what it started.
            cp.abort();
            if let Ok(Some(cp)) = cp.await {
                if let Some(vips) = cp.vips {
                    // They saw the shutdown signal above.
                    let t = Instant::now();
                    vips.stopped().await;
                    log::info!(
                        "vip: released and resigned in {} ms",
                        t.elapsed().as_millis()
                    );
                }
                let t = Instant::now();
                cp.etcd.stop().await;
                log::info!("etcd stopped in {} ms", t.elapsed().as_millis());
            }
        }
        for (name, task) in self.tasks.into_iter().rev() {
            task.abort();
            log::debug!("stopped {name}");
        }
    }
}
