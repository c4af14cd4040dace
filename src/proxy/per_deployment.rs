//! LiteLLM's `max_retries` per deployment: at most `1 + max_retries` attempts at one
//! deployment in one request, whichever of its keys they use (LiteLLM's SDK retries
//! the same deployment; `num_retries` is the router's budget across deployments).

use std::sync::Arc;

use crate::config::Deployment;

/// Attempts spent per deployment in one request, for deployments with LiteLLM's
/// `max_retries` (at most `1 + max_retries` attempts there, whichever keys they use).
#[derive(Default)]
pub(super) struct PerDeployment(Vec<(Arc<Deployment>, u32)>);

impl PerDeployment {
    pub(super) fn allows(&self, deployment: &Arc<Deployment>) -> bool {
        let Some(max_retries) = deployment.options.max_retries else { return true };
        let spent = self.0.iter().find(|(d, _)| Arc::ptr_eq(d, deployment)).map_or(0, |(_, n)| *n);
        spent <= max_retries
    }

    pub(super) fn record(&mut self, deployment: &Arc<Deployment>) {
        if deployment.options.max_retries.is_none() {
            return;
        }
        match self.0.iter_mut().find(|(d, _)| Arc::ptr_eq(d, deployment)) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((Arc::clone(deployment), 1)),
        }
    }
}
