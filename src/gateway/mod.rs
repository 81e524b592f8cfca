//! The HJ 1239 / GB 17691 Annex Q terminal gateway: TCP listener, per-connection sessions,
//! limits. It feeds the same pipeline as gRPC; the codec lives in `crate::hj1239`.
mod activity;
mod limits;
pub mod records;
mod session;

use crate::hj1239::BodyLayout;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Real-time body layout of a listener. Real fleets mix makes, so the default detects the layout
/// per frame (remembering each terminal's); a fixed value is an override for a listener whose
/// terminals are known to use one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutSetting {
    #[default]
    Detect,
    Gb17691,
    Hj1239,
    SignedBodies,
}

impl LayoutSetting {
    /// The overriding layout, `None` when detecting.
    pub fn fixed(self) -> Option<BodyLayout> {
        match self {
            LayoutSetting::Detect => None,
            LayoutSetting::Gb17691 => Some(BodyLayout::Gb17691),
            LayoutSetting::Hj1239 => Some(BodyLayout::Hj1239),
            LayoutSetting::SignedBodies => Some(BodyLayout::SignedBodies),
        }
    }
}

/// The layout each terminal used last, shared by all connections of a listener so a terminal
/// that reconnects is decoded in its own layout first.
#[derive(Default)]
pub(crate) struct LayoutMemory(parking_lot::Mutex<std::collections::HashMap<crate::model::Vin, BodyLayout>>);

impl LayoutMemory {
    pub(crate) fn get(&self, vin: &crate::model::Vin) -> Option<BodyLayout> {
        self.0.lock().get(vin).copied()
    }

    /// Records `layout` for `vin`; returns the previous one when it changed.
    pub(crate) fn learn(&self, vin: crate::model::Vin, layout: BodyLayout) -> Option<Option<BodyLayout>> {
        let previous = self.0.lock().insert(vin, layout);
        (previous != Some(layout)).then_some(previous)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// Listen address; `None` disables the gateway.
    pub addr: Option<SocketAddr>,
    /// Info-body layout: detected per frame (default), or fixed for this listener (override).
    pub layout: LayoutSetting,
    /// Registered non-road machines use the HJ 1322 machinery dialect (0x05 = removal alarm,
    /// position in the report header), so trucks and machines share one listener. On by default;
    /// off treats machines as trucks.
    pub machinery_dialect: bool,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout_s: u64,
    /// A connection that has not logged in within this time is closed.
    pub login_timeout_s: u64,
    /// A frame still incomplete this long after its header arrived, while more bytes arrive, is
    /// abandoned and the stream resynced (a damaged length field must not silence a terminal).
    pub stall_timeout_ms: u64,
    /// Connections open at once; more are accepted and closed at once (counted).
    pub max_connections: usize,
    /// Sustained frames per second per connection; bursts up to `frame_burst`.
    pub max_frames_per_s: f64,
    pub frame_burst: f64,
    /// Largest data unit accepted (bytes).
    pub max_data_len: usize,
    /// Answer 0x02/0x03 reports once durable (UNVERIFIED protocol behaviour; see `Answer::report`).
    pub answer_reports: bool,
    /// Time between consecutive engine bodies of one GB-layout report (UNVERIFIED).
    pub gb_body_interval_ms: i64,
    /// Reports awaiting durability per connection before reading pauses.
    pub max_in_flight: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            addr: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            layout: LayoutSetting::Detect,
            machinery_dialect: true,
            idle_timeout_s: 300,
            login_timeout_s: 60,
            stall_timeout_ms: 5_000,
            max_connections: 50_000,
            max_frames_per_s: 50.0,
            frame_burst: 200.0,
            max_data_len: crate::hj1239::DEFAULT_MAX_DATA_LEN,
            answer_reports: true,
            gb_body_interval_ms: 1000,
            max_in_flight: 16,
        }
    }
}

impl GatewayConfig {
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s.max(1))
    }
}

/// Accepts terminal connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    cfg: GatewayConfig,
    registry: Arc<Registry>,
    pipeline: Arc<Pipeline>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let layouts = Arc::new(LayoutMemory::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "hj1239 accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("smogwatch_hj1239_connections_refused_total").increment(1);
            tracing::warn!(%peer, "hj1239 connection limit reached; closing");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let session =
            session::Session::new(cfg.clone(), registry.clone(), pipeline.clone(), layouts.clone(), peer);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            metrics::gauge!("smogwatch_hj1239_connections").increment(1.0);
            session.run(socket, shutdown).await;
            metrics::gauge!("smogwatch_hj1239_connections").decrement(1.0);
            drop(permit);
        });
    }
}
