//! Given / when / then for account decisions: the past as events, one command at one instant,
//! and the events (or the refusal) that must follow. No database, no clock.

use chrono::{DateTime, TimeZone, Utc};

use crate::account::{
    decide, Account, AccountCommand, AccountEvent, ActivateDevice, ApproveOnDevice, CancelLogin,
    ConfirmReset, Context, Decision, DenyOnDevice, Disable, DomainError, HelpdeskReset,
    OpenedSecret, RecordNotice, RecordResetEmail, Rejection, RequestReset, StartLogin, SubmitCode,
    Unlock,
};
use crate::ids::EnrollmentId;
use crate::policy::Policy;

/// One call of `decide`: the command as its sender built it, and what the caller looked up by IO
/// to decide it (the opened secret, a newly sealed enrollment), which go into the context.
#[derive(Debug, Clone)]
pub struct Call {
    pub command: AccountCommand,
    pub secret: Option<OpenedSecret>,
    pub enrollment: Option<EnrollmentId>,
}

impl Call {
    pub fn new(command: impl Into<AccountCommand>) -> Self {
        Call {
            command: command.into(),
            secret: None,
            enrollment: None,
        }
    }

    pub fn with_secret(self, secret: Option<OpenedSecret>) -> Self {
        Call { secret, ..self }
    }

    pub fn with_enrollment(self, enrollment: Option<EnrollmentId>) -> Self {
        Call { enrollment, ..self }
    }

    pub fn decide(&self, account: &Account, now: DateTime<Utc>, policy: &Policy) -> Decision {
        let context = Context::new(now, policy)
            .with_secret(self.secret.as_ref())
            .with_enrollment(self.enrollment);
        decide(account, &self.command, context)
    }
}

impl From<AccountCommand> for Call {
    fn from(command: AccountCommand) -> Self {
        Call::new(command)
    }
}

macro_rules! call_from {
    ($($name:ident),* $(,)?) => {
        $(impl From<$name> for Call {
            fn from(command: $name) -> Self {
                Call::new(command)
            }
        })*
    };
}

call_from!(
    StartLogin,
    SubmitCode,
    ActivateDevice,
    ApproveOnDevice,
    DenyOnDevice,
    CancelLogin,
    Disable,
    RequestReset,
    ConfirmReset,
    HelpdeskReset,
    Unlock,
    RecordResetEmail,
    RecordNotice,
);

pub struct Given {
    history: Vec<AccountEvent>,
    policy: Policy,
}

pub fn given(history: impl IntoIterator<Item = AccountEvent>) -> Given {
    Given {
        history: history.into_iter().collect(),
        policy: Policy::default(),
    }
}

/// A fixed instant in the middle of a 30-second step, so `now - 15s` and `now + 14s` share it.
pub fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_615, 0)
        .single()
        .unwrap_or_default()
}

impl Given {
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn state(&self) -> Account {
        Account::from_events(&self.history)
    }

    /// Decides `call` at `now` on the state the history folds to.
    pub fn when(self, call: impl Into<Call>, now: DateTime<Utc>) -> Then {
        let state = self.state();
        let result = call.into().decide(&state, now, &self.policy);
        Then { state, result }
    }
}

pub struct Then {
    pub state: Account,
    pub result: Result<Vec<AccountEvent>, Rejection>,
}

impl Then {
    /// The decision accepted the command with exactly these events.
    #[track_caller]
    pub fn then(self, expected: Vec<AccountEvent>) -> Account {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "unexpected events");
                events.iter().fold(self.state, |s, e| s.evolve(e))
            }
            Err(rejection) => panic!("expected events, got {rejection:?}"),
        }
    }

    /// The command was accepted; the events are checked by `check`.
    #[track_caller]
    pub fn then_events(self, check: impl FnOnce(&[AccountEvent])) -> Account {
        match self.result {
            Ok(events) => {
                check(&events);
                events.iter().fold(self.state, |s, e| s.evolve(e))
            }
            Err(rejection) => panic!("expected events, got {rejection:?}"),
        }
    }

    /// Refused, and nothing recorded.
    #[track_caller]
    pub fn then_err(self, expected: DomainError) {
        match self.result {
            Ok(events) => panic!("expected {expected:?}, got events {events:?}"),
            Err(rejection) => {
                assert_eq!(rejection.error, expected);
                assert!(
                    rejection.record.is_empty(),
                    "refusal recorded {:?}",
                    rejection.record
                );
            }
        }
    }

    /// Refused, with these events recorded (a counted failure, an expiry noticed).
    #[track_caller]
    pub fn then_rejected_recording(
        self,
        expected: DomainError,
        record: Vec<AccountEvent>,
    ) -> Account {
        match self.result {
            Ok(events) => panic!("expected {expected:?}, got events {events:?}"),
            Err(rejection) => {
                assert_eq!(rejection.error, expected);
                assert_eq!(rejection.record, record, "unexpected recorded events");
                record.iter().fold(self.state, |s, e| s.evolve(e))
            }
        }
    }
}
