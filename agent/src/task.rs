//! Keeping a request's context (its trace and debug session) when its work
//! moves to another task: `tokio::spawn` starts with an empty context.

use std::future::Future;

use opentelemetry::context::FutureExt as _;

/// `tokio::spawn` that carries the current context into the task, so probes
/// in it still see the request's debug session.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let answer = keyhole::spawn(async { 6 * 7 }).await.unwrap();
/// assert_eq!(answer, 42);
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.with_current_context())
}

#[cfg(test)]
mod tests {
    use opentelemetry::Context;

    #[derive(Debug, PartialEq)]
    struct Marker(u32);

    // Worker threads, not the test's: a plain spawn starts with no context there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_spawned_task_sees_the_context_it_was_spawned_in() {
        let _entered = Context::current_with_value(Marker(7)).attach();
        let seen = super::spawn(async { Context::map_current(|cx| cx.get::<Marker>().map(|m| m.0)) })
            .await
            .unwrap();
        assert_eq!(seen, Some(7));
        let plain = tokio::spawn(async { Context::map_current(|cx| cx.get::<Marker>().is_some()) })
            .await
            .unwrap();
        assert!(!plain, "plain tokio::spawn loses it, which is why this exists");
    }
}
