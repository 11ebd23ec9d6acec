//! [`LimitStage`]: rate limits and stream caps as a pipeline stage. The route's limits are kept
//! here by route id; the [`RateLimiter`] behind it is shared by every listener.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::{RequestHeader, ResponseHeader};

use super::{Admission, Caller, RateLimiter, RouteLimits};
use crate::error::ProxyError;
use crate::protocol::RouteProtocol;
use crate::stage::{Exchange, ResponseHead, Stage};

/// Rate limiting for every route.
pub struct LimitStage {
    limiter: Arc<RateLimiter>,
    /// Each route's limits (inherited + its own), by route id.
    routes: Vec<Arc<RouteLimits>>,
}

impl LimitStage {
    /// The stage over `limiter` with each route's limits, indexed by route id.
    pub fn new(limiter: Arc<RateLimiter>, routes: Vec<Arc<RouteLimits>>) -> Self {
        Self { limiter, routes }
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }
}

#[async_trait]
impl Stage for LimitStage {
    type State = Admission;

    /// After identify and authorize: limits key on the principal, and a request refused earlier
    /// must not spend its caller's budget. Async: a shared limit asks Redis.
    async fn on_request(
        &self,
        x: &Exchange<'_>,
        state: &mut Admission,
        req: &RequestHeader,
    ) -> Result<(), ProxyError> {
        let Some(limits) = self.routes.get(x.route.id) else {
            return Ok(());
        };
        let wants_stream = x.route.protocol == RouteProtocol::Agui
            || req
                .headers
                .get_all(http::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.to_ascii_lowercase().contains("text/event-stream"));
        let caller = Caller {
            route: &x.route.name,
            principal: x.principal,
            client_ip: x.client_ip,
            wants_stream,
        };
        *state = self.limiter.check(limits, &caller).await?;
        Ok(())
    }

    /// IETF `RateLimit` headers when configured; a response that is not a stream gives its
    /// stream slot back now instead of when the body ends.
    fn on_response(
        &self,
        _x: &Exchange<'_>,
        state: &mut Admission,
        head: &ResponseHead,
        resp: &mut ResponseHeader,
    ) -> Result<(), ProxyError> {
        for (name, value) in state.response_headers() {
            resp.insert_header(name, value)
                .map_err(|_| ProxyError::Internal)?;
        }
        if !head.is_sse {
            state.release_stream();
        }
        Ok(())
    }
}
