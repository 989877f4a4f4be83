//! Events, as `kubectl describe` shows them.
//!
//! kubelet reports what happens to a pod as Kubernetes Events: a type
//! (Normal or Warning), a reason (`Pulled`, `Started`, `BackOff`,
//! `Unhealthy`...), a message, the object and field they concern, and a
//! count with first and last times (repeats are folded into one event).
//! The agent keeps the most recent ones in memory.

use std::collections::VecDeque;

use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Kind {
    Normal,
    Warning,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    pub count: u32,
    pub first_timestamp: Timestamp,
    pub last_timestamp: Timestamp,
}

/// The most recent events (oldest dropped first).
#[derive(Debug, Default)]
pub struct Events {
    pub list: VecDeque<Event>,
}

const KEEP: usize = 2000;

impl Events {
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        namespace: &str,
        pod: &str,
        uid: &str,
        kind: Kind,
        reason: &str,
        message: String,
        field: Option<&str>,
    ) -> Event {
        let now = Timestamp::now();
        if let Some(e) = self.list.iter_mut().rev().take(50).find(|e| {
            e.uid == uid
                && e.reason == reason
                && e.message == message
                && e.field_path.as_deref() == field
        }) {
            e.count += 1;
            e.last_timestamp = now;
            return e.clone();
        }
        if self.list.len() >= KEEP {
            self.list.pop_front();
        }
        let e = Event {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            uid: uid.to_string(),
            kind,
            reason: reason.to_string(),
            message,
            field_path: field.map(str::to_string),
            count: 1,
            first_timestamp: now,
            last_timestamp: now,
        };
        self.list.push_back(e.clone());
        e
    }
}
