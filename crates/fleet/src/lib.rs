//! The fleet: `deploy.toml` (the desired state of `kiln serve`, parsed strictly, with
//! `file:line:col` errors and a plan against the current state) and the front proxy that
//! spreads each service's TCP connections over its instances.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod analysis;
pub mod api;
pub mod daemon;
pub mod deploy;
pub mod drift;
pub mod egress;
pub mod gate;
pub mod health;
pub mod history;
pub mod limits;
pub mod observe;
mod pool;
pub mod proxy;
pub mod secrets;
pub mod state;
mod sys;

pub use deploy::{
    Change, DeployError, Deployment, Health, HealthCheck, ImageRef, Limits, ListenError, Plan,
    ServiceAction, ServiceSpec, Strategy, check_listen_free, format_duration, parse_duration, plan,
};
pub use proxy::{
    Backend, BackendStats, Dial, Proxy, ProxyStats, StepWeights, TcpDial, weights_for_step,
};
