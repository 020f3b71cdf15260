//! Reads that many requests make at the same moment with the same question, run once.
//!
//! A message in a busy room wakes every listener of the room at the same stream position, and
//! each asks the database the same things (the rooms with events since its token, the room's new
//! events). A [`SharedReads`] remembers the newest few questions with their answers (or the read
//! in flight, which later askers wait for), so the first asker reads and the others take its
//! answer. Only for questions whose answer cannot change once asked (fixed stream positions);
//! callers key them accordingly.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::OnceCell;

pub struct SharedReads<K, V> {
    /// The newest questions, oldest first.
    recent: Mutex<VecDeque<(K, Arc<OnceCell<V>>)>>,
    kept: usize,
}

impl<K: PartialEq + Clone, V: Clone> SharedReads<K, V> {
    /// Remembers the answers of the newest `kept` questions.
    pub fn new(kept: usize) -> Self {
        Self { recent: Mutex::new(VecDeque::with_capacity(kept)), kept: kept.max(1) }
    }

    /// The answer to `key`: remembered, being read by another asker, or read now by `read`. A
    /// failed read is not remembered (the next asker reads again).
    pub async fn get_or_read<E, F, Fut>(&self, key: K, read: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            match recent.iter().find(|(asked, _)| *asked == key) {
                Some((_, cell)) => cell.clone(),
                None => {
                    if recent.len() >= self.kept {
                        recent.pop_front();
                    }
                    let cell = Arc::new(OnceCell::new());
                    recent.push_back((key, cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_try_init(read).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::SharedReads;

    #[tokio::test]
    async fn concurrent_askers_of_one_question_share_one_read() {
        let shared = SharedReads::<u32, u32>::new(2);
        let reads = AtomicUsize::new(0);
        let ask = |key: u32| {
            let (shared, reads) = (&shared, &reads);
            async move {
                shared
                    .get_or_read(key, || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(key * 10)
                    })
                    .await
            }
        };
        let answers = futures_util::future::join_all((0..5).map(|_| ask(7))).await;
        assert_eq!(answers, vec![Ok(70); 5]);
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for five askers");
        assert_eq!(ask(8).await, Ok(80));
        assert_eq!(ask(9).await, Ok(90));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        assert_eq!(ask(7).await, Ok(70), "forgotten after two newer questions: read again");
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_remembered() {
        let shared = SharedReads::<u32, u32>::new(4);
        assert_eq!(shared.get_or_read(1, || async { Err::<u32, &str>("down") }).await, Err("down"));
        assert_eq!(shared.get_or_read(1, || async { Ok::<u32, &str>(3) }).await, Ok(3));
        assert_eq!(shared.get_or_read(1, || async { Ok::<u32, &str>(4) }).await, Ok(3), "remembered");
    }
}
