//! Hotplug: what udevd would do for Keel, driven by kernel uevents. A
//! device that appears with a `MODALIAS` gets its module loaded (a coldplug
//! pass over new devices; the kernel loads nothing by itself for hotplugged
//! devices), and network links that appear or go are handed to the network
//! manager, which names and configures them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::net::manager::Event;
use crate::uevent::{UeventError, UeventSocket};

/// Reads uevents forever. `plug` runs one coldplug pass (on a blocking
/// thread: finit_module(2) blocks while the module initialises); passes do
/// not overlap, and uevents that arrive during a pass are served by one
/// more pass after it.
pub async fn run(
    socket: UeventSocket,
    plug: Arc<dyn Fn() + Send + Sync>,
    net: mpsc::UnboundedSender<Event>,
) {
    let pending = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    loop {
        let ev = match socket.recv().await {
            Ok(ev) => ev,
            Err(UeventError::Overflow) => {
                log::warn!("hotplug: uevents were lost; rescanning devices");
                schedule(&plug, &pending, &running);
                continue;
            }
            Err(e) => {
                log::error!("hotplug: {e}; hotplug stops");
                return;
            }
        };
        if ev.action == "add" && ev.modalias().is_some() {
            schedule(&plug, &pending, &running);
        }
        if ev.subsystem.as_deref() == Some("net") {
            if let Some(name) = ev.interface() {
                let msg = match ev.action.as_str() {
                    "add" => Some(Event::LinkAdded(name.to_owned())),
                    "remove" => Some(Event::LinkRemoved(name.to_owned())),
                    _ => None, // "move" is a rename, most likely Keel's own
                };
                if let Some(m) = msg {
                    let _ = net.send(m);
                }
            }
        }
    }
}

fn schedule(
    plug: &Arc<dyn Fn() + Send + Sync>,
    pending: &Arc<AtomicBool>,
    running: &Arc<AtomicBool>,
) {
    pending.store(true, Ordering::SeqCst);
    if running.swap(true, Ordering::SeqCst) {
        return; // the running pass loops once more for this
    }
    let (plug, pending, running) = (plug.clone(), pending.clone(), running.clone());
    tokio::task::spawn_blocking(move || loop {
        pending.store(false, Ordering::SeqCst);
        plug();
        if !pending.load(Ordering::SeqCst) {
            running.store(false, Ordering::SeqCst);
            // A uevent may have set `pending` between the check and the
            // store; take the pass back if nobody else did.
            if !pending.load(Ordering::SeqCst) || running.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    });
}
