//! (in progress)

pub fn start(_ctx: &crate::Ctx, _set: &mut tokio::task::JoinSet<()>) {}
