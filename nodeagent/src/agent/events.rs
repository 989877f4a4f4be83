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

/// An event's type, as kubelet's: Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Kind {
    /// Something expected happened (`Pulled`, `Started`...).
    Normal,
    /// Something went wrong (`Failed`, `BackOff`, `Unhealthy`...).
    Warning,
}

/// One event about a pod, its repeats folded in (a `v1` Event, reduced to
/// what `describe` shows).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid.
    pub uid: String,
    /// Normal or Warning (`type` in JSON).
    #[serde(rename = "type")]
    pub kind: Kind,
    /// What happened, in one CamelCase word (`Pulled`, `BackOff`...).
    pub reason: String,
    /// What happened, in a sentence.
    pub message: String,
    /// The container concerned, as `spec.containers{name}`; none when the
    /// event is about the pod as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    /// How many times it happened.
    pub count: u32,
    /// When it first happened.
    pub first_timestamp: Timestamp,
    /// When it last happened.
    pub last_timestamp: Timestamp,
}

/// The most recent events (oldest dropped first).
#[derive(Debug, Default)]
pub struct Events {
    /// The events, oldest first (at most 2000).
    pub list: VecDeque<Event>,
}

const KEEP: usize = 2000;

impl Events {
    /// Record an event about pod `uid`. A repeat of one of the last 50 (same
    /// pod, reason, message and field) is counted into that one instead; either
    /// way, the event as it now stands is returned.
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
