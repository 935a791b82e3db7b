//! The transition table, driven with every event in every phase: the resulting phase and
//! effects are checked against the table below, which is docs/lifecycle.md's.

use super::phase::{
    Drain, Effect::*, Event, Exit, ExitReason, Facts, Phase, Phase::*, RESCUES, Refusal, StatusLine,
};
use crate::child::Gone;
use crate::error::UpgradeError;
use crate::signals::Signal;

const SIGINT: Signal = Signal::SIGINT;
const SIGTERM: Signal = Signal::SIGTERM;

const ALONE: Facts = Facts {
    parent_alive: false,
    under_systemd: false,
    main_process: true,
};
const PARENT: Facts = Facts {
    parent_alive: true,
    under_systemd: false,
    main_process: false,
};
const SYSTEMD: Facts = Facts {
    parent_alive: false,
    under_systemd: true,
    main_process: true,
};

fn drain(reason: ExitReason, stops: u32) -> Drain {
    Drain {
        reason,
        stops,
        rescues: 0,
        rescuing: false,
        drained: false,
    }
}

const SERVING: Phase = Serving { deferred: false };
const UPGRADING: Phase = Upgrading {
    cancelled: false,
    stops: 0,
};

/// Every phase the table covers.
fn phases() -> Vec<Phase> {
    let upgraded = drain(ExitReason::Upgraded, 0);
    vec![
        Starting,
        Aborting {
            signal: Some(SIGTERM),
        },
        Aborting { signal: None },
        SERVING,
        Serving { deferred: true },
        UPGRADING,
        Upgrading {
            cancelled: true,
            stops: 1,
        },
        Draining(upgraded),
        Draining(Drain {
            stops: 1,
            ..upgraded
        }),
        Draining(Drain {
            rescuing: true,
            rescues: 1,
            ..upgraded
        }),
        Draining(Drain {
            rescuing: true,
            rescues: 1,
            drained: true,
            ..upgraded
        }),
        Draining(drain(ExitReason::Stopped, 1)),
        Exiting(Exit::Drained),
    ]
}

/// Every event, freshly made (they are not `Clone`).
fn events() -> Vec<Event> {
    vec![
        Event::Ready,
        Event::Aborted,
        Event::UpgradeSignal,
        Event::UpgradeRequest,
        Event::Stop(Some(SIGTERM)),
        Event::Stop(None),
        Event::ParentExited,
        Event::UpgradeDone(Ok(42)),
        Event::UpgradeDone(Err(UpgradeError::NotReady)),
        Event::SuccessorGone(Gone::Crashed),
        Event::SuccessorGone(Gone::Stopped),
        Event::SuccessorGone(Gone::Unknown),
        Event::RescueDone(Ok(43)),
        Event::RescueDone(Err(UpgradeError::NotReady)),
        Event::BodyReturned(Ok(())),
        Event::BodyReturned(Err("boom".into())),
        Event::Drained,
        Event::DrainTimeout,
        Event::Tick { healthy: true },
        Event::Tick { healthy: false },
        Event::SuccessorStarted(44),
    ]
}

/// The table: (phase, event, facts) -> (phase, effects), for every transition that does
/// something. Every other combination must leave the phase as it is and do nothing.
fn expected(
    phase: Phase,
    event: &Event,
    facts: Facts,
) -> Option<(Phase, Vec<super::phase::Effect>)> {
    use Event as E;
    let stopped = ExitReason::Stopped;
    let upgraded = ExitReason::Upgraded;
    Some(match (phase, event) {
        (Starting, E::Ready) if facts.parent_alive => (SERVING, vec![]),
        (Starting, E::Ready) => (SERVING, vec![Status(StatusLine::Serving)]),
        (Starting, E::UpgradeSignal) => (phase, vec![IgnoreUpgradeSignal(Refusal::NotReady)]),
        (Starting, E::UpgradeRequest) => (phase, vec![Refuse(Refusal::NotReady)]),
        (Starting, E::Stop(s)) => (Aborting { signal: *s }, vec![Abandon]),
        (Starting, E::BodyReturned(_)) => (Aborting { signal: None }, vec![Abandon]),

        (Aborting { signal }, E::Aborted) => (
            Exiting(Exit::Aborted(signal)),
            vec![Exit(Exit::Aborted(signal))],
        ),
        (Aborting { signal }, E::Ready) => (
            Draining(drain(stopped, u32::from(signal.is_some()))),
            vec![BeginDrain(stopped), TellParentStopping],
        ),
        (Aborting { .. }, E::UpgradeRequest) => (phase, vec![Refuse(Refusal::Terminating)]),

        (Serving { deferred }, E::UpgradeSignal) if facts.parent_alive => (
            Serving { deferred: true },
            if deferred {
                vec![]
            } else {
                vec![NotifyReloading, Status(StatusLine::UpgradeDeferred)]
            },
        ),
        (Serving { .. }, E::UpgradeSignal) => (
            UPGRADING,
            vec![
                StartUpgrade {
                    reloading_sent: false,
                },
                Status(StatusLine::Upgrading(None)),
            ],
        ),
        (Serving { .. }, E::UpgradeRequest) if facts.parent_alive => {
            (phase, vec![Refuse(Refusal::ParentAlive)])
        }
        (Serving { deferred }, E::UpgradeRequest) => (
            UPGRADING,
            vec![
                StartUpgrade {
                    reloading_sent: deferred,
                },
                Status(StatusLine::Upgrading(None)),
            ],
        ),
        (Serving { deferred: true }, E::ParentExited) => (
            UPGRADING,
            vec![
                StartUpgrade {
                    reloading_sent: true,
                },
                Status(StatusLine::Upgrading(None)),
            ],
        ),
        (Serving { .. }, E::Stop(s)) => (
            Draining(drain(stopped, u32::from(s.is_some()))),
            vec![
                BeginDrain(stopped),
                TellParentStopping,
                Status(StatusLine::Draining),
            ],
        ),
        (Serving { .. }, E::BodyReturned(Ok(()))) => (
            Draining(drain(stopped, 0)),
            vec![
                BeginDrain(stopped),
                TellParentStopping,
                Status(StatusLine::Draining),
            ],
        ),
        (Serving { .. }, E::BodyReturned(Err(_))) => (
            Draining(drain(stopped, 0)),
            vec![BeginDrain(stopped), Status(StatusLine::Draining)],
        ),

        (Upgrading { .. }, E::UpgradeSignal) => {
            (phase, vec![IgnoreUpgradeSignal(Refusal::InProgress)])
        }
        (Upgrading { .. }, E::UpgradeRequest) => (phase, vec![Refuse(Refusal::InProgress)]),
        (Upgrading { stops: 1, .. }, E::Stop(Some(s))) => {
            (Exiting(Exit::Forced(*s)), vec![Exit(Exit::Forced(*s))])
        }
        (Upgrading { stops, .. }, E::Stop(s)) => (
            Upgrading {
                cancelled: true,
                stops: stops + u32::from(s.is_some()),
            },
            vec![CancelUpgrade],
        ),
        (Upgrading { stops, .. }, E::BodyReturned(_)) => (
            Upgrading {
                cancelled: true,
                stops,
            },
            vec![CancelUpgrade],
        ),
        (Upgrading { stops, .. }, E::UpgradeDone(Ok(_))) => (
            Draining(drain(upgraded, stops)),
            vec![BeginDrain(upgraded), WatchSuccessor, AnswerWaiter],
        ),
        (
            Upgrading {
                cancelled: true,
                stops,
            },
            E::UpgradeDone(Err(_)),
        ) => (
            Draining(drain(stopped, stops)),
            vec![
                BeginDrain(stopped),
                TellParentStopping,
                AnswerWaiter,
                Status(StatusLine::Draining),
            ],
        ),
        (Upgrading { .. }, E::UpgradeDone(Err(_))) => (SERVING, vec![UpgradeFailed, AnswerWaiter]),

        (
            Upgrading {
                cancelled: false, ..
            },
            E::SuccessorStarted(pid),
        ) => (phase, vec![Status(StatusLine::Upgrading(Some(*pid)))]),

        // The notify loop's tick: only the main process is heard.
        (Starting, E::Tick { healthy }) if facts.main_process => {
            (phase, and_ping(vec![ExtendTimeout], *healthy))
        }
        (Serving { .. }, E::Tick { healthy }) if facts.main_process => {
            (phase, and_ping(vec![], *healthy))
        }
        (Upgrading { cancelled, .. }, E::Tick { healthy }) => (
            phase,
            and_ping(
                if cancelled {
                    vec![]
                } else {
                    vec![ExtendTimeout]
                },
                *healthy,
            ),
        ),
        (Draining(d), E::Tick { healthy }) if d.reason == stopped => (
            phase,
            and_ping(vec![Status(StatusLine::Draining)], *healthy),
        ),

        (Draining(d), E::Stop(Some(s)))
            if d.stops >= 1 && !(d.reason == upgraded && facts.under_systemd) =>
        {
            (Exiting(Exit::Forced(*s)), vec![Exit(Exit::Forced(*s))])
        }
        (Draining(d), E::Stop(Some(s))) => {
            (Draining(Drain { stops: 1, ..d }), vec![DrainContinues(*s)])
        }
        (Draining(d), E::UpgradeSignal) => (
            phase,
            vec![IgnoreUpgradeSignal(if d.reason == upgraded {
                Refusal::AlreadyUpgraded
            } else {
                Refusal::Terminating
            })],
        ),
        (Draining(d), E::UpgradeRequest) => (
            phase,
            vec![Refuse(if d.reason == upgraded {
                Refusal::AlreadyUpgraded
            } else {
                Refusal::Terminating
            })],
        ),
        (Draining(d), E::SuccessorGone(Gone::Crashed))
            if d.reason == upgraded
                && d.stops == 0
                && !d.rescuing
                && d.rescues < RESCUES
                && !facts.under_systemd =>
        {
            (
                Draining(Drain {
                    rescuing: true,
                    rescues: d.rescues + 1,
                    ..d
                }),
                vec![StartRescue],
            )
        }
        (Draining(_), E::SuccessorGone(g)) => (phase, vec![SuccessorLeft(*g)]),
        (Draining(d), E::RescueDone(r)) => {
            let mut effects = vec![RescueOutcome];
            if r.is_ok() {
                effects.push(WatchSuccessor);
            }
            if d.drained {
                effects.push(Exit(Exit::Drained));
                (Exiting(Exit::Drained), effects)
            } else {
                (
                    Draining(Drain {
                        rescuing: false,
                        ..d
                    }),
                    effects,
                )
            }
        }
        (Draining(d), E::Drained) if d.rescuing => (Draining(Drain { drained: true, ..d }), vec![]),
        (Draining(_), E::Drained) => (Exiting(Exit::Drained), vec![Exit(Exit::Drained)]),
        (Draining(_), E::DrainTimeout) => {
            (Exiting(Exit::DrainTimeout), vec![Exit(Exit::DrainTimeout)])
        }
        _ => return None,
    })
}

/// `effects` and a watchdog ping, if the health check passed.
fn and_ping(mut effects: Vec<super::phase::Effect>, healthy: bool) -> Vec<super::phase::Effect> {
    if healthy {
        effects.push(Watchdog);
    }
    effects
}

#[test]
fn every_event_in_every_phase_does_what_the_table_says() {
    let mut checked = 0;
    for facts in [ALONE, PARENT, SYSTEMD] {
        for phase in phases() {
            for event in events() {
                let got = phase.on(&event, facts);
                let want = expected(phase, &event, facts).unwrap_or((phase, vec![]));
                assert_eq!(got, want, "{phase:?} + {event:?} ({facts:?})");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 13 * 21);
}

#[test]
fn a_stop_before_ready_aborts_and_a_ready_that_won_the_race_stops_gracefully() {
    let (phase, effects) = Starting.on(&Event::Stop(Some(SIGINT)), ALONE);
    assert_eq!(
        phase,
        Aborting {
            signal: Some(SIGINT)
        }
    );
    assert_eq!(effects, vec![Abandon]);
    let (after, _) = phase.on(&Event::Aborted, ALONE);
    assert_eq!(after, Exiting(Exit::Aborted(Some(SIGINT))));
    let (raced, effects) = phase.on(&Event::Ready, ALONE);
    assert_eq!(raced, Draining(drain(ExitReason::Stopped, 1)));
    assert!(effects.contains(&TellParentStopping));
}

#[test]
fn after_a_handover_the_first_stop_continues_and_the_second_forces() {
    let (phase, _) = UPGRADING.on(&Event::UpgradeDone(Ok(7)), ALONE);
    let (phase, effects) = phase.on(&Event::Stop(Some(SIGTERM)), ALONE);
    assert_eq!(effects, vec![DrainContinues(SIGTERM)]);
    let (phase, effects) = phase.on(&Event::Stop(Some(SIGTERM)), ALONE);
    assert_eq!(phase, Exiting(Exit::Forced(SIGTERM)));
    assert_eq!(effects, vec![Exit(Exit::Forced(SIGTERM))]);
}

#[test]
fn under_systemd_a_process_that_handed_over_is_never_forced_by_a_repeated_sigterm() {
    let (phase, _) = UPGRADING.on(&Event::UpgradeDone(Ok(7)), SYSTEMD);
    let (phase, _) = phase.on(&Event::Stop(Some(SIGTERM)), SYSTEMD);
    let (phase, effects) = phase.on(&Event::Stop(Some(SIGTERM)), SYSTEMD);
    assert_eq!(phase, Draining(drain(ExitReason::Upgraded, 1)));
    assert_eq!(effects, vec![DrainContinues(SIGTERM)]);
    // A process draining after its own stop is forced by the next one, systemd or not.
    let stopped = Draining(drain(ExitReason::Stopped, 1));
    let (phase, _) = stopped.on(&Event::Stop(Some(SIGTERM)), SYSTEMD);
    assert_eq!(phase, Exiting(Exit::Forced(SIGTERM)));
}

#[test]
fn a_crashed_successor_is_replaced_at_most_rescues_times_and_never_under_systemd() {
    let mut phase = Draining(drain(ExitReason::Upgraded, 0));
    for _ in 0..RESCUES {
        let (rescuing, effects) = phase.on(&Event::SuccessorGone(Gone::Crashed), ALONE);
        assert_eq!(effects, vec![StartRescue]);
        (phase, _) = rescuing.on(&Event::RescueDone(Ok(9)), ALONE);
    }
    let (_, effects) = phase.on(&Event::SuccessorGone(Gone::Crashed), ALONE);
    assert_eq!(effects, vec![SuccessorLeft(Gone::Crashed)]);
    let fresh = Draining(drain(ExitReason::Upgraded, 0));
    let (_, effects) = fresh.on(&Event::SuccessorGone(Gone::Crashed), SYSTEMD);
    assert_eq!(effects, vec![SuccessorLeft(Gone::Crashed)]);
}
