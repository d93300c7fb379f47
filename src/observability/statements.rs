//! Counts the SQL statements each RPC runs, for its log line: the number that
//! most often explains a slow call, and the one a change must not quietly grow.
//!
//! The database connection reports every statement it executes (SeaORM's
//! metric callback, on the task that awaits the statement); the RPC layer
//! opens a count around each call. Statements outside a call (the outbox
//! relay, the pruner) are not counted anywhere. BEGIN and COMMIT are not
//! statements to SeaORM's callback, so transactions are not in the count.

use std::{cell::Cell, future::Future};

tokio::task_local! {
    static STATEMENTS: Cell<u32>;
}

/// Counts one statement toward the call running on this task, if any.
pub fn count_one() {
    let _ = STATEMENTS.try_with(|count| count.set(count.get().saturating_add(1)));
}

/// Runs `future` and returns what it returned with the statements it ran.
pub async fn counted<F: Future>(future: F) -> (F::Output, u32) {
    STATEMENTS
        .scope(Cell::new(0), async move {
            let output = future.await;
            (output, STATEMENTS.with(Cell::get))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_count_toward_the_call_they_run_in_and_nowhere_else() {
        count_one();
        let ((), outer) = counted(async {
            count_one();
            count_one();
        })
        .await;
        assert_eq!(outer, 2);
        let ((), none) = counted(async {}).await;
        assert_eq!(none, 0);
    }
}
