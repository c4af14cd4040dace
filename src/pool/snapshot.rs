//! The routing snapshot: everything a request reads, built whole off the request path
//! and swapped in atomically.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rand::RngCore;

use super::endpoint::{Demand, Endpoint, EndpointId, Rotation};
use super::queue::WaitQueue;
use super::select::{self, CandidateView, Select};
use super::session;
use super::state::{EndpointState, Exclusion, Priority};
use super::wildcard::{self, Pattern};
use crate::config::{Config, Deployment, Diagnostic, ModelRoute, ResolvedSecrets, ServerSettings, TlsProfile};
use crate::http::lanes::ProxyClient;
use crate::http::tls_profiles::{self, TlsClients};
use crate::provider::{Auth, NO_KEY};

/// An immutable routing table plus shared endpoint state. Requests load it once and
/// keep using it even if a newer one is stored meanwhile.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every successful (re)load; 0 before the first.
    pub generation: u64,
    pub server: ServerSettings,
    routes: BTreeMap<String, Route>,
    /// Aliases with a `*`, most specific first: tried when no alias matches exactly.
    patterns: Vec<String>,
    /// Upstream clients of deployments with their own `ssl_verify`.
    tls_clients: TlsClients,
    /// Set while no configuration has loaded since start: the errors of the latest
    /// version read. Such a snapshot (generation 0) has no routes, and every request
    /// is answered 503 with these errors, so a pod waits for the fix instead of
    /// crash-looping.
    pub config_errors: Option<Vec<Diagnostic>>,
    /// The Redis replicas share key state through, its secrets resolved.
    pub shared: Option<Arc<super::shared_target::Target>>,
}

/// One alias: its settings, its endpoints and the strategy that orders them.
#[derive(Debug)]
pub struct Route {
    /// `settings.alias`, shared: the route's metric label, cloned for every request.
    pub alias: Arc<str>,
    pub settings: ModelRoute,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Where requests wait when no endpoint has capacity.
    pub queue: WaitQueue,
    selector: Box<dyn Select>,
    /// Set for a wildcard alias (`openai/*`).
    pattern: Option<Pattern>,
}

/// An endpoint whose key value in the Secret differs from the one it served in the
/// previous snapshot (same alias, deployment, key name and base URL).
pub struct Changed<'a> {
    pub id: &'a EndpointId,
    pub deployment: &'a Arc<Deployment>,
    /// Credentials of the new value, for a probe; never logged (its `Debug` redacts).
    pub fresh: &'a Auth,
    pub fresh_fingerprint: u64,
    pub previous: &'a Endpoint,
}

/// Which value a [`Changed`] endpoint serves in the snapshot being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    New,
    /// The previous endpoint's value (and state) serve on, for this reason.
    Previous(Rotation),
}

/// Decides [`Choice`]s while a snapshot is built (the rotation pre-flight of
/// [`crate::lifecycle`]). Must not block: it runs inside [`Snapshot::build_with`].
pub trait KeyValues {
    fn choose(&self, changed: Changed<'_>) -> Choice;
}

/// A changed value serves at once (the first load, `check`, tests).
pub struct NewValues;

impl KeyValues for NewValues {
    fn choose(&self, _: Changed<'_>) -> Choice {
        Choice::New
    }
}

impl Snapshot {
    /// Builds a snapshot from a validated config and the secrets read for it, reading no
    /// secret itself, so what the reloader hashed is what serves (a deployment's CA
    /// bundle, no secret, is read by [`tls_profiles::client_for`]). State of
    /// endpoints that also exist in `previous` (same alias, deployment and key name,
    /// same key value) carries over. Returns every problem found, never the first only.
    pub fn build(
        config: &Config,
        secrets: &ResolvedSecrets,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Vec<Diagnostic>> {
        Self::build_with(config, secrets, previous, &NewValues)
    }

    /// [`Snapshot::build`], with `values` deciding for each key whose value changed
    /// whether the new value serves or the previous one serves on.
    pub fn build_with(
        config: &Config,
        secrets: &ResolvedSecrets,
        previous: Option<&Snapshot>,
        values: &dyn KeyValues,
    ) -> Result<Snapshot, Vec<Diagnostic>> {
        // A new base URL (`api_base: os.environ/NAME` rotated) is a new upstream: the old
        // one's cooldowns and open breakers say nothing about it.
        let carried: HashMap<(&EndpointId, u64, &http::Uri), &Arc<EndpointState>> = previous
            .into_iter()
            .flat_map(|p| p.routes.values())
            .flat_map(|r| &r.endpoints)
            .map(|e| ((&e.id, e.key_fingerprint, &e.deployment.base_url), &e.state))
            .collect();
        let previous_by_id: HashMap<&EndpointId, &Arc<Endpoint>> = previous
            .into_iter()
            .flat_map(|p| p.routes.values())
            .flat_map(|r| &r.endpoints)
            .map(|e| (&e.id, e))
            .collect();
        // Values already serving somewhere at the same upstream: proven by traffic, so a
        // key that takes one (a `keys_from` line moving up when the one above it is
        // removed) needs no probe, and the removed value must not serve on meanwhile.
        let serving: std::collections::HashSet<(u64, &http::Uri)> =
            previous_by_id.values().map(|e| (e.key_fingerprint, &e.deployment.base_url)).collect();
        let mut errors = Vec::new();
        let mut routes = BTreeMap::new();
        let mut tls_clients = TlsClients::new();
        for (alias, model) in &config.models {
            let alias_label: Arc<str> = Arc::from(alias.as_str());
            let mut endpoints = Vec::new();
            for deployment in model.deployments.iter().filter(|d| within_required_regions(model, d)) {
                let profile = &deployment.options.tls;
                if !tls_clients.contains_key(profile) {
                    let connect = config.server.connect_timeout;
                    match tls_profiles::client_for(profile, connect, previous.map(|p| &p.tls_clients)) {
                        Ok(Some(client)) => {
                            tls_clients.insert(profile.clone(), client);
                        }
                        Ok(None) => {}
                        Err(message) => errors.push(Diagnostic {
                            file: config.source.clone(),
                            origin: Default::default(),
                            message: format!("models.{alias}.{}: {message}", deployment.name),
                        }),
                    }
                }
                let deployment_arc = Arc::new(deployment.clone());
                let deployment_label: Arc<str> = Arc::from(deployment.name.as_str());
                let style = deployment.provider.auth_style_at(&deployment.base_url);
                if deployment.keys.is_empty() {
                    // A local server that needs no key: one endpoint that sends none.
                    let id = EndpointId {
                        alias: Arc::clone(&alias_label),
                        deployment: Arc::clone(&deployment_label),
                        key_name: NO_KEY.into(),
                    };
                    let state = carried.get(&(&id, 0, &deployment.base_url)).map(|s| Arc::clone(s)).unwrap_or_default();
                    endpoints.push(Arc::new(Endpoint {
                        id,
                        deployment: Arc::clone(&deployment_arc),
                        auth: Auth::none(style),
                        key_fingerprint: 0,
                        // No key: replicas name it by the server it reaches.
                        shared_fingerprint: crate::secret::Secret::new(format!("{NO_KEY}:{}", deployment.base_url))
                            .shared_fingerprint(),
                        state,
                        rotation: None,
                    }));
                }
                for key_ref in &deployment.keys {
                    let keys = match secrets.resolve(key_ref) {
                        Ok(keys) => keys,
                        Err(e) => {
                            errors.push(Diagnostic {
                                file: config.source.clone(),
                                origin: key_ref.origin.clone(),
                                message: e.to_string(),
                            });
                            continue;
                        }
                    };
                    for key in keys {
                        let auth = match Auth::new(style, &key.secret) {
                            Ok(auth) => auth,
                            Err(e) => {
                                let message = format!("secret {:?}: {e}", key.name);
                                errors.push(Diagnostic {
                                    file: config.source.clone(),
                                    origin: key_ref.origin.clone(),
                                    message,
                                });
                                continue;
                            }
                        };
                        let id = EndpointId {
                            alias: Arc::clone(&alias_label),
                            deployment: Arc::clone(&deployment_label),
                            key_name: key.name.into(),
                        };
                        let fingerprint = key.secret.fingerprint();
                        let state = carried
                            .get(&(&id, fingerprint, &deployment.base_url))
                            .map(|s| Arc::clone(s))
                            .unwrap_or_default();
                        state.limit_rest(model.cooldown_bounds.ceiling, Instant::now());
                        let changed = previous_by_id.get(&id).filter(|p| {
                            p.key_fingerprint != fingerprint
                                && p.deployment.base_url == deployment.base_url
                                && !serving.contains(&(fingerprint, &deployment.base_url))
                        });
                        let choice = changed.map_or(Choice::New, |previous| {
                            values.choose(Changed {
                                id: &id,
                                deployment: &deployment_arc,
                                fresh: &auth,
                                fresh_fingerprint: fingerprint,
                                previous,
                            })
                        });
                        let endpoint = match (choice, changed) {
                            (Choice::Previous(rotation), Some(previous)) => Endpoint {
                                id,
                                deployment: Arc::clone(&deployment_arc),
                                auth: previous.auth.clone(),
                                key_fingerprint: previous.key_fingerprint,
                                shared_fingerprint: previous.shared_fingerprint.clone(),
                                state: Arc::clone(&previous.state),
                                rotation: Some(rotation),
                            },
                            _ => Endpoint {
                                id,
                                deployment: Arc::clone(&deployment_arc),
                                auth,
                                key_fingerprint: fingerprint,
                                shared_fingerprint: key.secret.shared_fingerprint(),
                                state,
                                rotation: None,
                            },
                        };
                        endpoints.push(Arc::new(endpoint));
                    }
                }
            }
            let selector = select::for_strategy(model.strategy, endpoints.len());
            let queue = WaitQueue::new(model.queue);
            let pattern = Pattern::parse(alias);
            let route = Route { alias: alias_label, settings: model.clone(), endpoints, queue, selector, pattern };
            routes.insert(alias.clone(), route);
        }
        let shared = super::shared_target::Target::resolve(config, secrets)
            .map_err(|e| errors.push(e))
            .ok()
            .flatten()
            .map(Arc::new);
        if !errors.is_empty() {
            return Err(errors);
        }
        let generation = previous.map_or(1, |p| p.generation + 1);
        let mut patterns: Vec<(&Pattern, &String)> =
            routes.iter().filter_map(|(alias, r)| Some((r.pattern.as_ref()?, alias))).collect();
        patterns.sort_by_key(|(p, alias)| (p.specificity(), *alias));
        let patterns = patterns.into_iter().map(|(_, alias)| alias.clone()).collect();
        let server = config.server.clone();
        Ok(Snapshot { generation, server, routes, patterns, tls_clients, config_errors: None, shared })
    }

    /// The snapshot of a process whose configuration has not loaded yet: no routes, the
    /// process settings `server`, and the `errors` that every request is answered with.
    pub fn unconfigured(server: ServerSettings, errors: Vec<Diagnostic>) -> Snapshot {
        Snapshot {
            generation: 0,
            server,
            routes: BTreeMap::new(),
            patterns: Vec::new(),
            tls_clients: TlsClients::new(),
            config_errors: Some(errors),
            shared: None,
        }
    }

    /// The route for a requested model: the alias of that name, else the most
    /// specific wildcard alias matching it (see [`super::wildcard`]).
    pub fn route(&self, alias: &str) -> Option<&Route> {
        self.routes.get(alias).or_else(|| {
            let mut matching = self.patterns.iter().filter_map(|p| self.routes.get(p));
            matching.find(|r| r.pattern.as_ref().is_some_and(|p| p.captures(alias).is_some()))
        })
    }

    /// The client for deployments with this TLS profile; `None`: the process's own.
    pub fn tls_client(&self, profile: &TlsProfile) -> Option<&ProxyClient> {
        match profile {
            TlsProfile::Default => None,
            _ => self.tls_clients.get(profile).map(|(_, client)| client),
        }
    }

    /// All routes, sorted by alias.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }
}

impl Route {
    /// Whether this is a wildcard alias (not listed by `/v1/models`).
    pub fn is_wildcard(&self) -> bool {
        self.pattern.is_some()
    }

    /// The model `deployment` of this route sends upstream for `requested`: fixed, or
    /// built from what this route's `*`s matched (the name whole where they did not,
    /// as when this route serves as another alias's fallback).
    pub fn upstream_model<'d>(&self, deployment: &'d Deployment, requested: &str) -> Cow<'d, str> {
        if !deployment.upstream_model.contains('*') {
            return Cow::Borrowed(&deployment.upstream_model);
        }
        let captures = self.pattern.as_ref().and_then(|p| p.captures(requested));
        let captures = captures.unwrap_or_else(|| vec![requested]);
        wildcard::upstream_model(&deployment.upstream_model, &captures, requested)
    }

    /// The endpoints to try for one request, best first: those with capacity that
    /// pass `usable`, grouped by priority (`order`), then local region first, each
    /// group in the alias's strategy order. A session's endpoint leads: the weighted
    /// rendezvous winner within the first group, since that group takes the request
    /// anyway (a winner chosen among all endpoints and then sorted behind the first
    /// group would never be used, and its sessions would follow the strategy instead).
    pub fn candidates(
        &self,
        usable: impl Fn(&Endpoint) -> bool,
        pick: &Pick<'_>,
        rng: &mut dyn RngCore,
    ) -> Vec<Arc<Endpoint>> {
        self.candidates_explained(usable, pick, rng, &mut Vec::new())
    }

    /// [`Route::candidates`], adding to `excluded` each usable endpoint left out, and
    /// why. A low-priority request prefers the lower tiers (higher `order`).
    pub fn candidates_explained(
        &self,
        usable: impl Fn(&Endpoint) -> bool,
        pick: &Pick<'_>,
        rng: &mut dyn RngCore,
        excluded: &mut Vec<(Arc<Endpoint>, Exclusion)>,
    ) -> Vec<Arc<Endpoint>> {
        let mut available = Vec::new();
        let mut views = Vec::new();
        let reserve = self.settings.queue.reserve();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if !usable(endpoint) {
                continue;
            }
            let need = endpoint.need(&pick.demand, reserve);
            match endpoint.state.check(&endpoint.limits(), &need, pick.now) {
                Ok(headroom) => {
                    views.push(CandidateView {
                        index,
                        weight: endpoint.deployment.weight,
                        in_flight: endpoint.state.in_flight(),
                        latency: endpoint.state.latency(),
                        headroom,
                    });
                    available.push(endpoint);
                }
                Err(why) => excluded.push((Arc::clone(endpoint), why)),
            }
        }
        let mut ordered: Vec<&Arc<Endpoint>> =
            self.selector.order(&views, rng).into_iter().filter_map(|pos| available.get(pos).copied()).collect();
        let remote = |e: &Endpoint| pick.region.is_some() && e.deployment.region.as_deref() != pick.region;
        let low = pick.demand.priority == Priority::Low;
        let tier =
            |e: &Endpoint| if low { -i64::from(e.deployment.priority) } else { i64::from(e.deployment.priority) };
        let group = |e: &Endpoint| (tier(e), remote(e));
        ordered.sort_by_key(|e| group(e));
        if let (Some(session), Some(first)) = (pick.session, ordered.first()) {
            let first_group = group(first);
            let group_len = ordered.iter().take_while(|e| group(e) == first_group).count();
            let score = |e: &Endpoint| session::weighted_score(session, &e.id, e.deployment.weight);
            let best = (0..group_len).max_by(|&a, &b| score(ordered[a]).total_cmp(&score(ordered[b])));
            if let Some(best) = best {
                ordered[..=best].rotate_right(1);
            }
        }
        ordered.into_iter().cloned().collect()
    }

    /// When an endpoint passing `usable` may next have capacity: the earliest known
    /// end of a cooldown, open breaker or spent quota. `None` if nothing known will
    /// free up (disabled keys, or only in-flight caps, which free as requests end).
    pub fn next_capacity(&self, usable: impl Fn(&Endpoint) -> bool, demand: &Demand, now: Instant) -> Option<Instant> {
        let reserve = self.settings.queue.reserve();
        self.endpoints
            .iter()
            .filter(|e| usable(e))
            .filter_map(|e| match e.state.check(&e.limits(), &e.need(demand, reserve), now) {
                Ok(_) => Some(now),
                Err(why) => why.until(),
            })
            .min()
    }
}

/// Whether requests of `model` may use `deployment`: a required region set admits
/// only deployments in it (one without a region is nowhere in particular, so never).
/// Endpoints outside are not built at all, so nothing can choose them, not even a
/// request that finds every allowed key cooling down.
fn within_required_regions(model: &ModelRoute, deployment: &Deployment) -> bool {
    let required = &model.required_regions;
    required.is_empty() || deployment.region.as_ref().is_some_and(|r| required.contains(r))
}

/// What a request brings to endpoint selection besides the route itself.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    pub now: Instant,
    /// The sidecar's region: endpoints there come first.
    pub region: Option<&'a str>,
    /// The session header's value: pins the request to one endpoint while it has capacity.
    pub session: Option<&'a str>,
    /// Its size and priority.
    pub demand: Demand,
}
