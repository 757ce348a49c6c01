//! Debug sessions as the agent trusts them.
//!
//! A [`TrustedSession`] can only be made by verifying a session token signed
//! by the control plane; its fields are private to this crate, so nothing that
//! parses a header can forge one. It travels in the `opentelemetry::Context`
//! of the request, which is where probes look for it, and it carries the
//! token it was verified from, which Keyhole's outbound propagation sends on.
//! The token is not put in the context's OpenTelemetry baggage: baggage is
//! the application's, and tracing pipelines may copy it into spans and logs,
//! where a bearer token for the session has no place.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use keyhole_proto::token::{SessionVerifier, TokenError, MAX_TOKEN_LEN};
use opentelemetry::{Context, ContextGuard};
use subtle::ConstantTimeEq as _;

use crate::budget::{monotonic_nanos, RateLimit};
use crate::propagation::{is_plain_text, Baggage};
use crate::trace::RequestSpan;

/// The baggage entry that carries a session token.
pub const SESSION_BAGGAGE_KEY: &str = "keyhole.session";
/// Verified tokens remembered, so a debugging client's requests pay for one
/// signature check, not one each.
pub const MAX_CACHED_TOKENS: usize = 1024;
/// Signature checks of tokens not in the cache, per second. Checking costs
/// tens of microseconds; beyond this budget unknown tokens are refused, so a
/// flood of forged tokens cannot spend the host's CPU (it can only delay
/// debugging while it lasts).
pub const TOKEN_CHECKS_PER_SEC: f64 = 200.0;
/// Sessions each thread remembers having been granted, most recent first, so that its next
/// request of one of them finds it without the agent, the shared cache or its locks.
pub const REMEMBERED_SESSIONS_PER_THREAD: usize = 4;

/// A debug session whose token was verified by this agent.
///
/// One shared allocation: every request of the session clones it out of the verified-token cache
/// in each service it passes through and drops it when done, and each of those touches one count
/// that every serving thread shares, not one per field.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedSession(Arc<Verified>);

/// What a verified token grants.
#[derive(PartialEq, Eq)]
struct Verified {
    session_id: Box<str>,
    /// The token it was verified from, to send on downstream. Never printed.
    token: Box<str>,
    /// `keyhole.session=` and the token as a `baggage` member carries it, encoded once when the
    /// token is verified (and kept with it in the cache) rather than on every outbound call.
    baggage_member: Box<str>,
    expires_at_unix: u64,
}

impl fmt::Debug for TrustedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedSession")
            .field("session_id", &self.0.session_id)
            .field("expires_at_unix", &self.0.expires_at_unix)
            .finish()
    }
}

/// Why a token did not become a trusted session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// No agent is running (or it has not received keys yet).
    NoAgent,
    /// The token did not verify.
    Token(TokenError),
    /// Too many unknown tokens were checked this second.
    Busy,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NoAgent => f.write_str("no keyhole agent is running with session keys yet"),
            SessionError::Token(e) => e.fmt(f),
            SessionError::Busy => f.write_str("too many session tokens to check right now"),
        }
    }
}

impl std::error::Error for SessionError {}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TrustedSession {
    /// Verifies `token` with the control plane's keys.
    pub(crate) fn verify(
        verifier: &SessionVerifier,
        token: &str,
        now_unix: u64,
    ) -> Result<Self, SessionError> {
        let claims = verifier.verify(token, now_unix).map_err(SessionError::Token)?;
        let mut member = Baggage::new();
        member
            .insert(SESSION_BAGGAGE_KEY, token)
            .map_err(|_| SessionError::Token(TokenError::Malformed("too long for baggage")))?;
        Ok(Self(Arc::new(Verified {
            session_id: claims.session_id.into(),
            token: token.into(),
            baggage_member: member.to_header().unwrap_or_default().into(),
            expires_at_unix: claims.expires_at_unix,
        })))
    }

    /// Verifies a session token (the value of the `keyhole.session` baggage
    /// entry) with the running agent's keys.
    ///
    /// ```
    /// // Without a running agent nothing can be trusted.
    /// assert!(keyhole::TrustedSession::from_token("v1.k.s.1.sig").is_err());
    /// ```
    pub fn from_token(token: &str) -> Result<Self, SessionError> {
        if let Some(session) = Self::remembered(token.as_bytes()) {
            return Ok(session);
        }
        // Read before the check: a key change or a stop during it leaves what is remembered stale.
        let generation = TRUST_GENERATION.load(Ordering::Acquire);
        let session = crate::agent::with_running(|agent| agent.verify_session(token))
            .unwrap_or(Err(SessionError::NoAgent))?;
        remember(generation, &session);
        Ok(session)
    }

    pub fn session_id(&self) -> &str {
        &self.0.session_id
    }

    pub fn expires_at_unix(&self) -> u64 {
        self.0.expires_at_unix
    }

    /// The session this thread remembers `token` granting, unless expired or taken back since (see
    /// [`TrustedSession::from_token`]); compared as it lies in a header: a value equal to a
    /// remembered token is plain text.
    pub(crate) fn remembered(token: &[u8]) -> Option<TrustedSession> {
        let generation = TRUST_GENERATION.load(Ordering::Acquire);
        // Neither fails but on a thread being torn down; then the shared cache answers.
        REMEMBERED
            .try_with(|remembered| remembered.try_borrow().ok()?.find(token, generation, unix_now()))
            .ok()
            .flatten()
    }

    /// The token this session was verified from, as outbound calls carry it.
    pub(crate) fn token(&self) -> &str {
        &self.0.token
    }

    /// The session as one `baggage` list-member: `keyhole.session=` and the token, encoded.
    pub(crate) fn baggage_member(&self) -> &str {
        &self.0.baggage_member
    }

    /// Whether the session has expired at `now_unix_ms` (unix milliseconds).
    pub(crate) fn is_expired_at(&self, now_unix_ms: i64) -> bool {
        let now_unix = u64::try_from(now_unix_ms / 1000).unwrap_or(0);
        self.0.expires_at_unix <= now_unix
    }

    /// The current context with this session in it: in place of the request's own session when
    /// the current context is a request's.
    pub fn context(&self) -> Context {
        Context::map_current(|cx| match cx.get::<RequestSpan>() {
            Some(span) => cx.with_value(RequestSpan {
                session: Some(self.clone()),
                ..span.clone()
            }),
            None => cx.with_value(self.clone()),
        })
    }

    /// The session of `cx`, expired or not: the one its request carried (the inbound layer keeps it
    /// with the request's span), or one made current with [`TrustedSession::context`] or
    /// [`TrustedSession::attach`]. Read it here, not with `cx.get::<TrustedSession>()`, which
    /// finds only the latter.
    pub fn in_context(cx: &Context) -> Option<&TrustedSession> {
        // The request's span is in the context of every request served; the entry of its own is
        // looked for only outside one, or in a request that carried no session.
        match cx.get::<RequestSpan>().and_then(|span| span.session.as_ref()) {
            Some(session) => Some(session),
            None => cx.get::<TrustedSession>(),
        }
    }

    /// Makes this session current on this thread until the guard is dropped.
    /// Across `.await`s, use [`TrustedSession::context`] with
    /// `opentelemetry::context::FutureExt::with_context`.
    pub fn attach(&self) -> ContextGuard {
        self.context().attach()
    }

    /// The session of the current request, if it has a trusted one that has
    /// not expired.
    pub fn current() -> Option<TrustedSession> {
        Context::map_current(|cx| TrustedSession::in_context(cx).cloned())
            .filter(|session| session.expires_at_unix() > unix_now())
    }
}

/// Counts the changes that may take back what a verified token granted: new keys (some may be
/// retired), or the agent stopping. What a thread remembers holds only while this stays as it was.
static TRUST_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every thread forget the sessions it remembers.
pub(crate) fn forget_remembered_sessions() {
    TRUST_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The sessions one thread was granted lately: a session's requests are served by a few threads,
/// each of which finds the session here by comparing its token, touching nothing another thread
/// writes and running little code, where the shared cache hashes the token, locks a shard and is
/// reached through the running agent.
struct Remembered {
    /// The [`TRUST_GENERATION`] the sessions were granted in.
    generation: u64,
    /// Most recent first.
    sessions: [Option<TrustedSession>; REMEMBERED_SESSIONS_PER_THREAD],
}

impl Remembered {
    const EMPTY: Self = Self {
        generation: 0,
        sessions: [const { None }; REMEMBERED_SESSIONS_PER_THREAD],
    };

    /// The unexpired session `token` granted, if remembered in `generation`.
    fn find(&self, token: &[u8], generation: u64, now_unix: u64) -> Option<TrustedSession> {
        if self.generation != generation {
            return None;
        }
        self.sessions
            .iter()
            .flatten()
            // In constant time, as the control plane compares its secrets: the token is a bearer
            // secret and `token` what a caller sent, who must not learn from the time taken how
            // much of it was right.
            .find(|session| bool::from(session.token().as_bytes().ct_eq(token)))
            .filter(|session| session.expires_at_unix() > now_unix)
            .cloned()
    }

    /// Remembers `session`, granted in `generation`, first; forgets the least recent if full, and
    /// everything when the generation changed.
    fn remember(&mut self, generation: u64, session: &TrustedSession) {
        if self.generation != generation {
            *self = Self::EMPTY;
            self.generation = generation;
        }
        let position = self
            .sessions
            .iter()
            .position(|kept| kept.as_ref().is_some_and(|kept| kept.token() == session.token()))
            .unwrap_or(REMEMBERED_SESSIONS_PER_THREAD - 1);
        if let Some(recent) = self.sessions.get_mut(..=position) {
            recent.rotate_right(1);
            if let Some(first) = recent.first_mut() {
                *first = Some(session.clone());
            }
        }
    }
}

thread_local! {
    static REMEMBERED: RefCell<Remembered> = const { RefCell::new(Remembered::EMPTY) };
}

/// Remembers `session` on this thread, if its token is plain baggage text (every token the control
/// plane signs is): the inbound layer compares a header's bytes with what is remembered before it
/// checks them, so a value equal to a remembered token must be one the check would pass.
fn remember(generation: u64, session: &TrustedSession) {
    if !is_plain_text(session.token().as_bytes()) {
        return;
    }
    let _ = REMEMBERED.try_with(|remembered| {
        if let Ok(mut remembered) = remembered.try_borrow_mut() {
            remembered.remember(generation, session);
        }
    });
}

/// Tokens this agent verified, until they expire or the keys change.
pub(crate) struct VerifiedTokens {
    /// Keyed with a fast, unkeyed-quality hash rather than SipHash: every request that carries a
    /// session hashes its whole token here. Only tokens whose signature verified are inserted, so a
    /// caller cannot fill the map with keys chosen to collide.
    verified: DashMap<Box<str>, TrustedSession, foldhash::fast::RandomState>,
    checks: RateLimit,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            verified: DashMap::default(),
            checks: RateLimit::new(TOKEN_CHECKS_PER_SEC, TOKEN_CHECKS_PER_SEC as u32),
        }
    }
}

impl VerifiedTokens {
    /// The session `token` grants, from the cache or by checking its signature.
    pub fn verify(&self, verifier: &SessionVerifier, token: &str) -> Result<TrustedSession, SessionError> {
        // The monotonic clock is only read for a signature check, which is rare.
        self.verify_at(verifier, token, unix_now(), monotonic_nanos)
    }

    /// [`VerifiedTokens::verify`] at a given wall-clock second, with the monotonic clock `instant`.
    fn verify_at(
        &self,
        verifier: &SessionVerifier,
        token: &str,
        now: u64,
        instant: impl FnOnce() -> u64,
    ) -> Result<TrustedSession, SessionError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SessionError::Token(TokenError::Malformed(
                "longer than 256 bytes",
            )));
        }
        if let Some(session) = self.verified.get(token) {
            if session.expires_at_unix() > now {
                return Ok(session.clone());
            }
        }
        // Malformed and unknown-key tokens are refused by parsing alone, which is cheap;
        // only a signature check spends the budget.
        let parsed = keyhole_proto::token::parse(token).map_err(SessionError::Token)?;
        if !verifier.has_key(parsed.key_id) {
            return Err(SessionError::Token(TokenError::UnknownKey));
        }
        if !self.checks.try_acquire(instant()) {
            return Err(SessionError::Busy);
        }
        let session = TrustedSession::verify(verifier, token, now)?;
        if self.verified.len() >= MAX_CACHED_TOKENS {
            self.verified.retain(|_, cached| cached.expires_at_unix() > now);
            if self.verified.len() >= MAX_CACHED_TOKENS {
                self.verified.clear();
            }
        }
        self.verified.insert(token.into(), session.clone());
        Ok(session)
    }

    /// Forgets every verified token (the keys changed: some may be retired).
    pub fn clear(&self) {
        self.verified.clear();
        forget_remembered_sessions();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use keyhole_proto::token::SessionSigner;

    fn keys() -> (SessionSigner, SessionVerifier) {
        let signer = SessionSigner::new("k1", &[3; 32]).unwrap();
        let verifier = SessionVerifier::from_keys(&[signer.verification_key()]).unwrap();
        (signer, verifier)
    }

    /// Session `id`, signed with the tests' key and verified, valid for a minute.
    pub(crate) fn verified(id: &str) -> TrustedSession {
        let (signer, verifier) = keys();
        let token = crate::testing::session_token(&signer, id, 60).unwrap();
        TrustedSession::verify(&verifier, &token, unix_now()).unwrap()
    }

    #[test]
    fn a_session_is_one_pointer_to_one_shared_allocation() {
        let session = verified("ses-shared");
        assert_eq!(
            std::mem::size_of::<TrustedSession>(),
            std::mem::size_of::<usize>()
        );
        let copy = session.clone();
        assert!(
            Arc::ptr_eq(&session.0, &copy.0),
            "a clone shares what was verified"
        );
        assert_eq!(copy, session);
    }

    #[test]
    fn a_session_made_current_in_a_request_takes_the_place_of_the_one_it_carried() {
        let carried = verified("ses-carried");
        let made = verified("ses-made");
        let request = crate::trace::open_span(Context::new(), None, None, Some(carried));
        let id = |cx: &Context| TrustedSession::in_context(cx).map(|s| s.session_id().to_owned());
        assert_eq!(id(&request).as_deref(), Some("ses-carried"));
        assert!(
            request.get::<TrustedSession>().is_none(),
            "the carried session is kept with the span, not in an entry of its own"
        );

        let _in_request = request.clone().attach();
        let cx = made.context();
        assert_eq!(id(&cx).as_deref(), Some("ses-made"));
        assert_eq!(
            TrustedSession::current().map(|s| s.session_id().to_owned()),
            Some("ses-carried".to_owned()),
            "making a context does not make it current"
        );
        let span = |cx: &Context| cx.get::<RequestSpan>().map(|span| span.span_id);
        assert_eq!(span(&cx), span(&request), "the request's span stays");
        let _made = made.attach();
        assert_eq!(
            TrustedSession::current().map(|s| s.session_id().to_owned()),
            Some("ses-made".to_owned())
        );
    }

    #[test]
    fn a_request_that_carried_no_session_is_served_in_the_session_made_current_around_it() {
        let around = verified("ses-around");
        let request = crate::trace::open_span(Context::new().with_value(around), None, None, None);
        assert_eq!(
            TrustedSession::in_context(&request).map(TrustedSession::session_id),
            Some("ses-around")
        );
        let carried = verified("ses-carried");
        let inner = crate::trace::open_span(request, None, None, Some(carried));
        assert_eq!(
            TrustedSession::in_context(&inner).map(TrustedSession::session_id),
            Some("ses-carried"),
            "the request's own session comes first"
        );
    }

    #[test]
    fn a_thread_finds_a_session_it_was_granted_by_its_token_until_it_expires_or_trust_changes() {
        let session = verified("ses-remembered");
        let other = verified("ses-other");
        let mut remembered = Remembered::EMPTY;
        remembered.remember(7, &session);
        let now = unix_now();
        let found = remembered
            .find(session.token().as_bytes(), 7, now)
            .expect("remembered");
        assert!(Arc::ptr_eq(&found.0, &session.0), "the very session granted");
        assert!(remembered.find(other.token().as_bytes(), 7, now).is_none());
        assert!(
            remembered
                .find(&session.token().as_bytes()[1..], 7, now)
                .is_none(),
            "the whole token, not a part"
        );
        assert!(
            remembered
                .find(session.token().as_bytes(), 7, session.expires_at_unix())
                .is_none(),
            "not once expired"
        );
        assert!(
            remembered.find(session.token().as_bytes(), 8, now).is_none(),
            "not after the keys changed or the agent stopped"
        );
        remembered.remember(8, &other);
        assert!(
            remembered.find(session.token().as_bytes(), 7, now).is_none(),
            "a new generation forgets the old one's sessions"
        );
        assert!(remembered.find(other.token().as_bytes(), 8, now).is_some());
    }

    #[test]
    fn a_thread_remembers_its_most_recent_sessions_and_forgets_the_least_recent() {
        let sessions: Vec<TrustedSession> = (0..=REMEMBERED_SESSIONS_PER_THREAD)
            .map(|i| verified(&format!("ses-{i}")))
            .collect();
        let mut remembered = Remembered::EMPTY;
        for session in &sessions[..REMEMBERED_SESSIONS_PER_THREAD] {
            remembered.remember(1, session);
        }
        // The first becomes the most recent again, so the next one in forgets the second.
        remembered.remember(1, &sessions[0]);
        remembered.remember(1, &sessions[REMEMBERED_SESSIONS_PER_THREAD]);
        let now = unix_now();
        let kept: Vec<bool> = sessions
            .iter()
            .map(|session| remembered.find(session.token().as_bytes(), 1, now).is_some())
            .collect();
        let mut expected = vec![true; sessions.len()];
        expected[1] = false;
        assert_eq!(kept, expected);
        assert_eq!(
            remembered.sessions.iter().flatten().count(),
            REMEMBERED_SESSIONS_PER_THREAD,
            "remembering one again does not keep it twice"
        );
    }

    #[test]
    fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let (signer, verifier) = keys();
        let tokens = VerifiedTokens::default();
        let token = signer.sign("ses-1", unix_now() + 60).unwrap();
        assert_eq!(tokens.verify(&verifier, &token).unwrap().session_id(), "ses-1");
        let empty = SessionVerifier::default();
        assert!(
            tokens.verify(&empty, &token).is_ok(),
            "the second look is a cache hit"
        );
        tokens.clear();
        assert!(
            tokens.verify(&empty, &token).is_err(),
            "after a key change it is checked again"
        );
    }

    #[test]
    fn forged_tokens_never_enter_the_cache_and_their_checks_are_budgeted() {
        let (signer, verifier) = keys();
        let forger = SessionSigner::new("k1", &[4; 32]).unwrap();
        let tokens = VerifiedTokens::default();
        let mut busy = 0;
        let one_instant = monotonic_nanos();
        for i in 0..1000 {
            let forged = forger.sign(&format!("ses-{i}"), unix_now() + 60).unwrap();
            match tokens.verify_at(&verifier, &forged, unix_now(), || one_instant) {
                Err(SessionError::Busy) => busy += 1,
                Err(SessionError::Token(TokenError::BadSignature)) => {}
                other => panic!("a forged token was accepted: {other:?}"),
            }
        }
        assert_eq!(
            busy,
            1000 - TOKEN_CHECKS_PER_SEC as usize,
            "a flood of forged tokens runs out of checks"
        );
        assert!(tokens.verified.is_empty());
        let genuine = signer.sign("ses-genuine", unix_now() + 60).unwrap();
        let a_second_later = one_instant + 1_000_000_000;
        assert!(
            tokens
                .verify_at(&verifier, &genuine, unix_now(), || a_second_later)
                .is_ok(),
            "checks come back"
        );
    }

    #[test]
    fn tokens_of_unknown_keys_and_malformed_tokens_cost_no_signature_check() {
        let (_, verifier) = keys();
        let tokens = VerifiedTokens::default();
        for _ in 0..10_000 {
            let unknown = "v1.k9.ses-1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
            assert!(matches!(
                tokens.verify(&verifier, unknown),
                Err(SessionError::Token(_))
            ));
            assert!(tokens.verify(&verifier, "session.id=alice").is_err());
        }
        assert!(
            tokens.checks.try_acquire(monotonic_nanos()),
            "the check budget is untouched"
        );
    }
}
