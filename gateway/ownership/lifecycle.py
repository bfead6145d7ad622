"""The device lifecycle at HMC: register, assign (reissue), return, recondition, ready, retire.

The state machine is data (`TRANSITIONS`); every operation is one transaction that locks the
device row (`SELECT ... FOR UPDATE`, so two operators cannot race), checks the transition,
changes the registry and appends its audit entries (ids only, never subject references). Every
change notifies ingest (the registry tables' triggers), which reloads within milliseconds: a
rotated or removed credential stops working at once, and routing follows the new assignments.

```
register ─▶ in_stock ─assign/reissue─▶ assigned ─return─▶ returned ─recondition─▶ reconditioning
               ▲                                                                     │
               └──────────────────────────────── ready ──────────────────────────────┘
retire: from in_stock, returned or reconditioning ─▶ retired (final)
```

Routing is by measurement time (docs/architecture.md, Ownership), so the assignment history is kept:
a return or reconditioning ends assignments (sets `valid_to`), it never deletes them. A reissue
may not start before the device's last assignment ended, nor before it was made ready, so
readings measured while it was back at HMC reach no huvudman (quarantine).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from adapters.codes import Kind
from gateway.ownership import audit, credentials, subjects
from gateway.ownership.assignment import LegalBasis
from gateway.ownership.credentials import new_token
from gateway.ownership.specs import (
    DeviceSpec,
    HuvudmanCode,
    Name,
    Refusal,
    SubjectRef,
    validate_dose_alarm,
)
from gateway.store.connector import Store, Transaction, as_interval
from gateway.store.credentials import StoredCredential
from gateway.store.errors import UnknownReference
from gateway.store.lifecycle import LockedDevice
from gateway.store.registration import NewAssignmentRow

# How far in the future a return may be dated (clock skew between an operator and the server).
FUTURE_SLACK = timedelta(minutes=1)


class State(StrEnum):
    IN_STOCK = "in_stock"
    ASSIGNED = "assigned"
    RETURNED = "returned"
    RECONDITIONING = "reconditioning"
    RETIRED = "retired"


class Action(StrEnum):
    REGISTER = "register"
    ASSIGN = "assign"
    RETURN = "return"
    RECONDITION = "recondition"
    READY = "ready"
    RETIRE = "retire"


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[State]
    target: State
    done: str  # how the message says it: "it must be <done> before ..."


TRANSITIONS: dict[Action, Transition] = {
    Action.REGISTER: Transition(frozenset(), State.IN_STOCK, "registered"),
    Action.ASSIGN: Transition(frozenset({State.IN_STOCK}), State.ASSIGNED, "assigned"),
    Action.RETURN: Transition(frozenset({State.ASSIGNED}), State.RETURNED, "returned"),
    Action.RECONDITION: Transition(frozenset({State.RETURNED}), State.RECONDITIONING,
                                   "reconditioned"),
    Action.READY: Transition(frozenset({State.RECONDITIONING}), State.IN_STOCK, "made ready"),
    Action.RETIRE: Transition(frozenset({State.IN_STOCK, State.RETURNED, State.RECONDITIONING}),
                              State.RETIRED, "retired"),
}

STATE_WORDS = {State.IN_STOCK: "in stock", State.ASSIGNED: "assigned",
               State.RETURNED: "returned", State.RECONDITIONING: "being reconditioned",
               State.RETIRED: "retired"}


def possible(state: State) -> list[Action]:
    """What can be done to a device in `state`, in lifecycle order."""
    return [a for a, t in TRANSITIONS.items() if state in t.sources]


def _path(state: State, action: Action) -> list[Action] | None:
    """The shortest sequence of steps (retire excluded) after which `action` is allowed."""
    seen = {state}
    queue: deque[tuple[State, list[Action]]] = deque([(state, [])])
    while queue:
        here, steps = queue.popleft()
        if here in TRANSITIONS[action].sources:
            return steps
        for step in possible(here):
            nxt = TRANSITIONS[step].target
            if step is not Action.RETIRE and nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, [*steps, step]))
    return None


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def refusal(device_id: str, state: State, action: Action) -> str:
    """The operator's message for a transition the state machine does not allow."""
    wanted = TRANSITIONS[action]
    now = possible(state)
    tail = (f" Possible from here: {', '.join(a.value for a in now)}." if now
            else " Nothing is possible from here.")
    if state is wanted.target and action is not Action.ASSIGN:
        return f"device {device_id} is already {STATE_WORDS[state]}.{tail}"
    if state is State.RETIRED:
        return f"device {device_id} is retired; it cannot be {wanted.done}.{tail}"
    steps = _path(state, action)
    if steps and Action.ASSIGN in steps and action is not Action.ASSIGN:
        # Not on the way back to HMC: the path would lend the device out first.
        sources = " or ".join(sorted(STATE_WORDS[x] for x in wanted.sources))
        return (f"device {device_id} is {STATE_WORDS[state]}; only a device that is {sources} "
                f"can be {wanted.done}.{tail}")
    if not steps:
        return f"device {device_id} is {STATE_WORDS[state]}; it cannot be {wanted.done}.{tail}"
    again = " again" if state is wanted.target else ""
    needed = _join([TRANSITIONS[s].done for s in steps])
    return (f"device {device_id} is {STATE_WORDS[state]}; it must be {needed} before it can be "
            f"{wanted.done}{again}.{tail}")


class LifecycleError(Refusal):
    """A refusal for the operator; `status` is its HTTP answer."""

    status = 400


class DeviceNotFound(LifecycleError):
    status = 404

    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id} is not registered")


class TransitionRefused(LifecycleError):
    status = 409

    def __init__(self, device_id: str, state: State, action: Action) -> None:
        super().__init__(refusal(device_id, state, action))
        self.state = state
        self.action = action


class AlreadyRegistered(LifecycleError):
    status = 409


class Forbidden(LifecycleError):
    """The operator's roles do not allow this (gateway/ownership/operators.py)."""

    status = 403


class OutOfScope(Forbidden):
    """A huvudman's integrator asked about a device outside its own assignments. The same
    answer whether the device exists or not, so devices cannot be enumerated this way."""

    def __init__(self, device_id: str, huvudman: str, alone: bool = False) -> None:
        super().__init__(
            f"device {device_id} is not assigned to huvudman {huvudman} alone; HMC can "
            "return it" if alone else
            f"device {device_id} has no assignment of huvudman {huvudman}")


class InvalidRequest(LifecycleError):
    """A value that cannot be accepted; `field` names it (dotted path, as in config errors)."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def from_validation(cls, err: ValidationError, prefix: str = "") -> InvalidRequest:
        """The first error, named by its field; never the offending input (it may be personal)."""
        first = err.errors()[0]
        where = ".".join(str(p) for p in (*((prefix,) if prefix else ()), *first["loc"]))
        return cls(where or "body", first["msg"])


class NewAssignment(BaseModel):
    """One huvudman's assignment of a device to a person (the subject reference is theirs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    huvudman: HuvudmanCode
    subject_ref: SubjectRef = Field(
        description="The huvudman's opaque reference to the person; stored, never logged")
    legal_basis: LegalBasis
    kinds: Annotated[list[Kind], Field(min_length=1)]
    alarm_route: Name | None = None
    position_consent: bool = Field(False, validate_default=True)
    dose_alarm: bool = Field(False, description="A missed medicine dose is an alarm for this "
                             "person: needs the medication kind and an alarm_route")

    @field_validator("position_consent")
    @classmethod
    def _position_needs_consent(cls, consent: bool, info: ValidationInfo) -> bool:
        if Kind.POSITION in info.data.get("kinds", ()) and not consent:
            raise ValueError("position data flows only under a recorded consent; "
                             "set position_consent")
        return consent

    _dose_alarm_needs_medication_and_route = field_validator("dose_alarm")(
        validate_dose_alarm)


@dataclass(frozen=True, slots=True)
class LifecycleResult:
    """What an operation did, for the CLI and the API. Ids only."""

    device: str
    action: Action
    state: State
    token: str | None = None  # a new credential: shown once, stored only as its hash
    assignments: list[uuid.UUID] = field(default_factory=list)  # created
    ended: list[uuid.UUID] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device, "action": self.action.value,
                               "state": self.state.value}
        if self.token is not None:
            out["token"] = self.token
        if self.assignments:
            out["assignments"] = [str(a) for a in self.assignments]
        if self.ended:
            out["ended_assignments"] = [str(a) for a in self.ended]
        if self.unpaired:
            out["unpaired"] = self.unpaired
        return out


async def _lock(tx: Transaction, device_id: str, action: Action) -> LockedDevice:
    device = await tx.lifecycle.lock_device(device_id)
    if device is None:
        raise DeviceNotFound(device_id)
    state = State(device.state)
    if state not in TRANSITIONS[action].sources:
        raise TransitionRefused(device_id, state, action)
    return device


async def _check_assignable_by(tx: Transaction, device_id: str, at: datetime,
                               huvudman: str) -> None:
    """Locks the device. An integrator may lend a device from stock, or add to one lent under
    its own huvudman; any other device is out of its scope, told the same way as one that does
    not exist (its state and existence are another huvudman's business)."""
    device = await tx.lifecycle.lock_device(device_id)
    if device is None:
        raise OutOfScope(device_id, huvudman)
    if State(device.state) not in TRANSITIONS[Action.ASSIGN].sources:
        owners = {a.huvudman for a in await tx.lifecycle.open_assignments(device_id, at)}
        if huvudman not in owners:
            raise OutOfScope(device_id, huvudman)


async def _check_within(tx: Transaction, device_id: str, at: datetime, huvudman: str) -> None:
    """Locks the device, then refuses unless all of its assignments open at `at` are
    `huvudman`'s (and there is one)."""
    await tx.lifecycle.lock_device(device_id)
    owners = {a.huvudman for a in await tx.lifecycle.open_assignments(device_id, at)}
    if huvudman not in owners:
        raise OutOfScope(device_id, huvudman)
    if owners != {huvudman}:
        raise OutOfScope(device_id, huvudman, alone=True)


async def _set_state(tx: Transaction, device_id: str, action: Action) -> State:
    target = TRANSITIONS[action].target
    await tx.lifecycle.set_state(device_id, target.value)
    return target


async def _end_open(tx: Transaction, device_id: str, at: datetime,
                    actor: str | None) -> list[uuid.UUID]:
    """End every assignment still covering time from `at` on (one not yet begun ends at its
    own start, covering nothing). History stays."""
    ended = []
    for open_one in await tx.lifecycle.open_assignments(device_id, at):
        valid_to = await tx.lifecycle.end_assignment(open_one.id, at)
        await audit.record(tx, "assignment.end", str(open_one.id), actor=actor,
                           device=device_id, huvudman=open_one.huvudman, valid_to=valid_to)
        ended.append(open_one.id)
    return ended


async def _check_start(tx: Transaction, device: LockedDevice, start: datetime) -> None:
    """A device back in stock may not be lent from before its last assignment ended, nor
    before it was made ready: readings measured while it was at HMC reach no huvudman."""
    history_end = await tx.lifecycle.last_assignment_end(device.id)
    if history_end is None:
        return
    if start < history_end:
        raise InvalidRequest("valid_from", "must not be before the device's last "
                             f"assignment ended ({history_end.isoformat()})")
    if start < device.state_since:
        raise InvalidRequest("valid_from", "must not be before the device was made "
                             f"ready ({device.state_since.isoformat()})")


async def enter_assigned(tx: Transaction, device_id: str, start: datetime) -> None:
    """An assignment from `start` is about to be added outside `assign` (a config file,
    `gateway assignment add`): by the same rules as `assign`, the device is assigned from now
    on. A device that is assigned already (a kommun beside the region) stays so, its
    `state_since` unchanged."""
    device = await tx.lifecycle.lock_device(device_id)
    if device is None:
        raise DeviceNotFound(device_id)
    state = State(device.state)
    if state is State.ASSIGNED:
        return
    if state not in TRANSITIONS[Action.ASSIGN].sources:
        raise TransitionRefused(device_id, state, Action.ASSIGN)
    await _check_start(tx, device, start)
    await _set_state(tx, device_id, Action.ASSIGN)


async def put_device(tx: Transaction, spec: DeviceSpec,
                     credential: StoredCredential | None) -> bool:
    """A device from a config file or `gateway device add`: a new one is registered in stock,
    an existing one updated (its credential kept unless a new one is given); a retired one is
    refused (it stays retired, without a credential). Whether anything changed. Raises
    UnknownReference for an unknown hub."""
    current = await tx.lifecycle.lock_device(spec.id)
    interval = as_interval(spec.heartbeat_interval_s)
    if current is None:
        if await tx.lifecycle.insert_device(spec.id, spec.type, spec.model, credential,
                                            interval, spec.hub):
            return True
        current = await tx.lifecycle.lock_device(spec.id)  # registered meanwhile
    if current is not None and State(current.state) is State.RETIRED:
        raise TransitionRefused(spec.id, State.RETIRED, Action.REGISTER)
    return await tx.registration.upsert_device(spec.id, spec.type, spec.model,
                                               credential, interval, spec.hub)


async def register(store: Store, device_id: str, device_type: str, model: str | None = None,
                   heartbeat_interval_s: int | None = None, hub: str | None = None, *,
                   actor: str | None = None) -> LifecycleResult:
    """A new device, in stock, with its first credential (returned once, stored as a hash)."""
    try:
        spec = DeviceSpec(id=device_id, type=device_type, model=model,
                          heartbeat_interval_s=heartbeat_interval_s, hub=hub)
    except ValidationError as err:
        raise InvalidRequest.from_validation(err) from None
    token = new_token()
    async with store.transaction() as tx:
        try:
            inserted = await tx.lifecycle.insert_device(
                spec.id, spec.type, spec.model, credentials.stored(spec.id, token),
                as_interval(spec.heartbeat_interval_s), spec.hub)
        except UnknownReference:
            raise InvalidRequest("hub", f"unknown device {spec.hub}") from None
        if not inserted:
            current = await tx.lifecycle.lock_device(spec.id)
            state = STATE_WORDS[State(current.state)] if current else "registered"
            raise AlreadyRegistered(f"device {spec.id} is already registered ({state}); "
                                    "register is for new devices only")
        await audit.record(tx, "device.register", spec.id, actor=actor, type=spec.type,
                           hub=spec.hub, state=State.IN_STOCK.value, credential="issued")
    return LifecycleResult(spec.id, Action.REGISTER, State.IN_STOCK, token=token)


async def assign(store: Store, device_id: str, assignments: Sequence[NewAssignment],
                 valid_from: datetime | None = None, *, actor: str | None = None,
                 within: str | None = None) -> LifecycleResult:
    """Lend an in-stock device to a person under one or more huvudmän (one scale can serve the
    region under HSL and the kommun under SoL), from `valid_from` (default now). After a
    reconditioning this is a reissue, possibly to another kommun. `within`: only assignments
    of this huvudman may be made (its integrator is acting)."""
    if not assignments:
        raise InvalidRequest("assignments", "at least one assignment is needed")
    for i, a in enumerate(assignments):
        if within is not None and a.huvudman != within:
            raise Forbidden(f"assignments.{i}.huvudman: an integrator of huvudman {within} "
                            f"may assign only to {within}")
    start = valid_from or datetime.now(UTC)
    if start.tzinfo is None:
        raise InvalidRequest("valid_from", "needs a time zone")
    async with store.transaction() as tx:
        if within is not None:
            await _check_assignable_by(tx, device_id, start, within)
        device = await _lock(tx, device_id, Action.ASSIGN)
        reissue = await tx.lifecycle.last_assignment_end(device_id) is not None
        await _check_start(tx, device, start)
        created = []
        for i, a in enumerate(assignments):
            if not await tx.registration.huvudman_exists(a.huvudman):
                raise InvalidRequest(f"assignments.{i}.huvudman", f"unknown huvudman {a.huvudman}")
            new_id = uuid.uuid4()
            kinds = [k.value for k in a.kinds]
            try:
                key, sealed = await subjects.protect(tx, a.huvudman, new_id, a.subject_ref)
            except subjects.SubjectError as err:
                raise InvalidRequest(f"assignments.{i}.huvudman", str(err)) from None
            await tx.registration.insert_assignment(NewAssignmentRow(
                id=new_id, device_id=device_id, huvudman=a.huvudman, subject_key=key,
                legal_basis=a.legal_basis.value, kinds=kinds, valid_from=start, valid_to=None,
                alarm_route=a.alarm_route, position_consent=a.position_consent,
                subject_sealed=sealed, dose_alarm=a.dose_alarm))
            await audit.record(tx, "assignment.add", str(new_id), actor=actor,
                               device=device_id, huvudman=a.huvudman,
                               legal_basis=a.legal_basis.value, kinds=kinds, valid_from=start,
                               valid_to=None, alarm_route=a.alarm_route,
                               position_consent=a.position_consent, dose_alarm=a.dose_alarm)
            created.append(new_id)
        state = await _set_state(tx, device_id, Action.ASSIGN)
        await audit.record(tx, "device.reissue" if reissue else "device.assign",
                           device_id, actor=actor, state=state.value,
                           assignments=[str(c) for c in created],
                           huvudman=sorted({a.huvudman for a in assignments}), valid_from=start)
    return LifecycleResult(device_id, Action.ASSIGN, state, assignments=created)


async def return_device(store: Store, device_id: str, at: datetime | None = None, *,
                        actor: str | None = None, within: str | None = None) -> LifecycleResult:
    """The device came back (återlämning): every assignment still open ends at `at` (default
    now), so readings measured from then on reach no huvudman. `within`: only when every
    open assignment is this huvudman's (its integrator is acting)."""
    now = datetime.now(UTC)
    when = at or now
    if when.tzinfo is None:
        raise InvalidRequest("at", "needs a time zone")
    if when > now + FUTURE_SLACK:
        raise InvalidRequest("at", "a return cannot be dated in the future")
    async with store.transaction() as tx:
        if within is not None:
            await _check_within(tx, device_id, when, within)
        await _lock(tx, device_id, Action.RETURN)
        ended = await _end_open(tx, device_id, when, actor)
        state = await _set_state(tx, device_id, Action.RETURN)
        await audit.record(tx, "device.return", device_id, actor=actor, state=state.value,
                           at=when, ended=[str(e) for e in ended])
    return LifecycleResult(device_id, Action.RETURN, state, ended=ended)


async def recondition(store: Store, device_id: str, *,
                      actor: str | None = None) -> LifecycleResult:
    """Reset a returned device (rekonditionering): unbind everything (open assignments end now,
    hub pairings go both ways) and rotate its credential; the old token stops working as soon
    as ingest reloads its registry (on the change notification)."""
    token = new_token()
    async with store.transaction() as tx:
        await _lock(tx, device_id, Action.RECONDITION)
        ended = await _end_open(tx, device_id, datetime.now(UTC), actor)
        unpaired = await tx.lifecycle.unpair(device_id)
        await tx.lifecycle.set_credential(device_id, credentials.stored(device_id, token))
        state = await _set_state(tx, device_id, Action.RECONDITION)
        await audit.record(tx, "device.recondition", device_id, actor=actor,
                           state=state.value, ended=[str(e) for e in ended], unpaired=unpaired,
                           credential="rotated")
    return LifecycleResult(device_id, Action.RECONDITION, state, token=token, ended=ended,
                           unpaired=unpaired)


async def ready(store: Store, device_id: str, *, actor: str | None = None) -> LifecycleResult:
    """Reconditioning is done: the device is back in stock, ready to be reissued."""
    async with store.transaction() as tx:
        await _lock(tx, device_id, Action.READY)
        state = await _set_state(tx, device_id, Action.READY)
        await audit.record(tx, "device.ready", device_id, actor=actor, state=state.value)
    return LifecycleResult(device_id, Action.READY, state)


async def retire(store: Store, device_id: str, *, actor: str | None = None) -> LifecycleResult:
    """Take a device out of service for good: its credential is removed, pairings go, and any
    assignment still open ends now. Its history stays."""
    async with store.transaction() as tx:
        await _lock(tx, device_id, Action.RETIRE)
        ended = await _end_open(tx, device_id, datetime.now(UTC), actor)
        unpaired = await tx.lifecycle.unpair(device_id)
        await tx.lifecycle.set_credential(device_id, None)
        state = await _set_state(tx, device_id, Action.RETIRE)
        await audit.record(tx, "device.retire", device_id, actor=actor, state=state.value,
                           ended=[str(e) for e in ended], unpaired=unpaired,
                           credential="removed")
    return LifecycleResult(device_id, Action.RETIRE, state, ended=ended, unpaired=unpaired)


async def show(store: Store, device_id: str, *, within: str | None = None) -> dict[str, Any]:
    """A device as an operator sees it: state, credential yes/no, hub, assignments (ids,
    huvudman, basis, kinds, from/to). No subject reference. `within`: only a device lent under
    this huvudman now, or last lent under it (returned, not yet lent to anyone else), with
    only that huvudman's assignments: once it is reissued, its state is the next owner's."""
    d = await store.lifecycle.device(device_id)
    assignments = await store.registration.assignments(device_id)
    if within is not None:
        now = datetime.now(UTC)
        latest = max(assignments, key=lambda a: a.valid_from, default=None)
        current = any(a.huvudman == within and a.valid_from <= now and
                      (a.valid_to is None or a.valid_to > now) for a in assignments)
        if not current and (latest is None or latest.huvudman != within):
            raise OutOfScope(device_id, within)
        assignments = [a for a in assignments if a.huvudman == within]
    if d is None:
        raise DeviceNotFound(device_id)
    state = State(d.state)
    return {
        "id": d.id, "type": d.device_type, "model": d.model, "state": state.value,
        "state_since": d.state_since.isoformat(), "credential": d.has_credential,
        "hub": d.hub_id, "paired": d.paired,
        "possible": [a.value for a in possible(state)],
        "assignments": [
            {"id": str(a.id), "huvudman": a.huvudman, "legal_basis": a.legal_basis,
             "kinds": a.kinds, "valid_from": a.valid_from.isoformat(),
             "valid_to": a.valid_to.isoformat() if a.valid_to else None,
             "dose_alarm": a.dose_alarm}
            for a in assignments],
    }
