//! Restarting containers per the pod's restart policy, with Kubernetes' crash back-off.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

pub use skiff_api::core::RestartPolicy;

use super::{ContainerId, ContainerSpec, ContainerState, Runtime, RuntimeError, Sandbox};

/// Delay before restart number `n` (from 0): `base * 2^n`, at most `cap`. A container that
/// ran for `reset_after` before it ended starts over at `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    /// The kubelet's: 10 s doubling to 5 min, reset after 10 min of running.
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    pub fn delay(&self, restarts: u32) -> Duration {
        let factor = 1u32.checked_shl(restarts.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// How a container's last run went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub started: SystemTime,
    pub finished: SystemTime,
}

impl LastExit {
    fn succeeded(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Restart { at: SystemTime },
    Leave,
}

/// What to do about a container that ended, after `restarts` restarts so far.
pub fn next_action(
    policy: RestartPolicy,
    backoff: &Backoff,
    last: &LastExit,
    restarts: u32,
    now: SystemTime,
) -> Action {
    match policy {
        RestartPolicy::Never => return Action::Leave,
        RestartPolicy::OnFailure if last.succeeded() => return Action::Leave,
        RestartPolicy::OnFailure | RestartPolicy::Always => {}
    }
    let ran = last
        .finished
        .duration_since(last.started)
        .unwrap_or_default();
    let restarts = if ran >= backoff.reset_after {
        0
    } else {
        restarts
    };
    let at = last.finished + backoff.delay(restarts);
    Action::Restart { at: at.max(now) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    /// Ended; restarts at the given time.
    BackingOff {
        until: SystemTime,
    },
    /// Ended for good, per the policy.
    Done(ContainerState),
}

/// Keeps one container of a pod running per its restart policy. Call [`Supervisor::poll`]
/// periodically. The previous run's container is kept (for its logs) until the next
/// restart replaces it.
pub struct Supervisor {
    runtime: Arc<dyn Runtime>,
    sandbox: Sandbox,
    spec: ContainerSpec,
    policy: RestartPolicy,
    backoff: Backoff,
    current: ContainerId,
    started: SystemTime,
    previous: Option<ContainerId>,
    restarts: u32,
    pending: Option<SystemTime>,
    /// How the last run ended (the current one's while it backs off), for the pod's status.
    last_exit: Option<(ContainerState, SystemTime)>,
}

impl Supervisor {
    pub fn start(
        runtime: Arc<dyn Runtime>,
        sandbox: Sandbox,
        spec: ContainerSpec,
        policy: RestartPolicy,
        backoff: Backoff,
    ) -> Result<Supervisor, RuntimeError> {
        let current = runtime.start(&sandbox, &spec)?;
        Ok(Supervisor {
            runtime,
            sandbox,
            spec,
            policy,
            backoff,
            current,
            started: SystemTime::now(),
            previous: None,
            restarts: 0,
            pending: None,
            last_exit: None,
        })
    }

    /// Takes over a container a previous daemon run started (found in the pod's record).
    pub fn adopt(
        runtime: Arc<dyn Runtime>,
        sandbox: Sandbox,
        spec: ContainerSpec,
        policy: RestartPolicy,
        backoff: Backoff,
        current: ContainerId,
        restarts: u32,
    ) -> Result<Supervisor, RuntimeError> {
        let started = match runtime.state(&current)? {
            ContainerState::Running { started, .. } => started,
            ContainerState::Exited { finished, .. } => finished,
        };
        Ok(Supervisor {
            runtime,
            sandbox,
            spec,
            policy,
            backoff,
            current,
            started,
            previous: None,
            restarts,
            pending: None,
            last_exit: None,
        })
    }

    /// The previous run's container while it is kept for its logs.
    pub fn previous(&self) -> Option<&ContainerId> {
        self.previous.as_ref()
    }

    /// When the current run started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// How the last run that ended went, and when it had started.
    pub fn last_exit(&self) -> Option<&(ContainerState, SystemTime)> {
        self.last_exit.as_ref()
    }

    pub fn container(&self) -> &ContainerId {
        &self.current
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn poll(&mut self, now: SystemTime) -> Result<Status, RuntimeError> {
        if let Some(at) = self.pending {
            if now < at {
                return Ok(Status::BackingOff { until: at });
            }
            self.restart(now)?;
            return Ok(Status::Running);
        }
        let state = self.runtime.state(&self.current)?;
        let ContainerState::Exited {
            code,
            signal,
            finished,
            ..
        } = state
        else {
            return Ok(Status::Running);
        };
        let last = LastExit {
            code,
            signal,
            started: self.started,
            finished,
        };
        self.last_exit = Some((state, self.started));
        match next_action(self.policy, &self.backoff, &last, self.restarts, now) {
            Action::Leave => Ok(Status::Done(state)),
            Action::Restart { at } => {
                // The reset applies to the count too, so later delays start over.
                if finished.duration_since(self.started).unwrap_or_default()
                    >= self.backoff.reset_after
                {
                    self.restarts = 0;
                }
                self.pending = Some(at);
                Ok(Status::BackingOff { until: at })
            }
        }
    }

    fn restart(&mut self, now: SystemTime) -> Result<(), RuntimeError> {
        if let Some(old) = self.previous.take() {
            self.runtime.remove(&old)?;
        }
        let id = self.runtime.start(&self.sandbox, &self.spec)?;
        self.previous = Some(std::mem::replace(&mut self.current, id));
        self.started = now;
        self.restarts += 1;
        self.pending = None;
        Ok(())
    }

    /// Stops the current container with `grace`, e.g. after a failed liveness probe; the
    /// next poll sees it ended and applies the restart policy.
    pub fn kill(&self, grace: Duration) -> Result<(), RuntimeError> {
        match self.runtime.stop(&self.current, grace) {
            Ok(_) | Err(RuntimeError::NotRunning(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops the current container and removes it and the previous one.
    pub fn shutdown(self, grace: Duration) -> Result<(), RuntimeError> {
        self.kill(grace)?;
        self.runtime.remove(&self.current)?;
        if let Some(old) = &self.previous {
            self.runtime.remove(old)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32, ran: Duration) -> (LastExit, SystemTime) {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let finished = started + ran;
        let last = LastExit {
            code: Some(code),
            signal: None,
            started,
            finished,
        };
        (last, finished)
    }

    #[test]
    fn backoff_doubles_from_base_to_cap() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.delay(u32::MAX), b.cap);
    }

    #[test]
    fn policies_decide_whether_to_restart() {
        let b = Backoff::default();
        let (failed, now) = exit(1, Duration::from_secs(1));
        let (succeeded, _) = exit(0, Duration::from_secs(1));
        let at = |n| Action::Restart {
            at: now + b.delay(n),
        };
        assert_eq!(
            next_action(RestartPolicy::Always, &b, &failed, 0, now),
            at(0)
        );
        assert_eq!(
            next_action(RestartPolicy::Always, &b, &succeeded, 2, now),
            at(2)
        );
        assert_eq!(
            next_action(RestartPolicy::OnFailure, &b, &failed, 3, now),
            at(3)
        );
        assert_eq!(
            next_action(RestartPolicy::OnFailure, &b, &succeeded, 0, now),
            Action::Leave
        );
        assert_eq!(
            next_action(RestartPolicy::Never, &b, &failed, 0, now),
            Action::Leave
        );
        let killed = LastExit {
            code: None,
            signal: Some(9),
            ..failed
        };
        assert_eq!(
            next_action(RestartPolicy::OnFailure, &b, &killed, 0, now),
            at(0)
        );
    }

    #[test]
    fn long_runs_reset_the_backoff_and_late_polls_restart_now() {
        let b = Backoff::default();
        let (long, finished) = exit(1, Duration::from_secs(600));
        assert_eq!(
            next_action(RestartPolicy::Always, &b, &long, 5, finished),
            Action::Restart {
                at: finished + b.base
            }
        );
        let later = finished + Duration::from_secs(3600);
        assert_eq!(
            next_action(RestartPolicy::Always, &b, &long, 5, later),
            Action::Restart { at: later }
        );
    }
}
