//! User-interactive authentication sessions: which stages a session has completed.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct UiaSessions {
    sessions: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl UiaSessions {
    pub fn create(&self) -> String {
        let id = myelin_core::random::alphanumeric(24);
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, (created, _)| created.elapsed() < SESSION_LIFETIME);
            s.insert(id.clone(), (Instant::now(), Vec::new()));
        }
        id
    }

    pub fn exists(&self, id: &str) -> bool {
        self.sessions.lock().is_ok_and(|s| s.get(id).is_some_and(|(c, _)| c.elapsed() < SESSION_LIFETIME))
    }

    pub fn complete(&self, id: &str, stage: &str) {
        if let Ok(mut s) = self.sessions.lock()
            && let Some((_, done)) = s.get_mut(id)
            && !done.iter().any(|d| d == stage)
        {
            done.push(stage.to_owned());
        }
    }

    pub fn completed(&self, id: &str) -> Vec<String> {
        self.sessions.lock().ok().and_then(|s| s.get(id).map(|(_, d)| d.clone())).unwrap_or_default()
    }

    pub fn finish(&self, id: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(id);
        }
    }
}
