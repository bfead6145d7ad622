"""Per-huvudman envelope encryption (gateway/crypto), docs/architecture.md, Encryption."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import cache

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto import (
    CryptoError,
    IntegrityError,
    KeyFormatError,
    KeySuite,
    MalformedEnvelopeError,
    Opener,
    Pseudonymizer,
    Sealer,
    UnknownDataKeyError,
    WrappedKey,
    WrongRecipientError,
    generate_keypair,
    generate_secret,
    load_private_key,
    load_public_key,
    parse_header,
)
from gateway.crypto import envelope as envelope_module
from gateway.crypto.envelope import ENVELOPE_OVERHEAD, associated_data
from gateway.crypto.keys import HuvudmanPrivateKey, HuvudmanPublicKey

SUITES = [KeySuite.MLKEM768_X25519, KeySuite.X25519]
SUBJECT = "subject-ref-7f3a"  # must never appear in an error message
PLAINTEXT = b'{"values":[{"code":188736,"value":81.4,"unit":"kg"}],"subject":"subject-ref-7f3a"}'


@cache
def keypair(huvudman: str, suite: KeySuite) -> tuple[HuvudmanPrivateKey, HuvudmanPublicKey]:
    return generate_keypair(huvudman, suite)


@cache
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(b"k" * 32)


def sealer_for(*huvudmän: str, suite: KeySuite = KeySuite.X25519, **kw: object) -> Sealer:
    return Sealer(
        {h: keypair(h, suite)[1] for h in huvudmän},
        pseudonymizer(),
        **kw,  # type: ignore[arg-type]
    )


def opener_for(huvudman: str, suite: KeySuite = KeySuite.X25519) -> Opener:
    return Opener(huvudman, [keypair(huvudman, suite)[0]])


def seal(
    sealer: Sealer,
    *,
    huvudman: str = "1480",
    subject: str = SUBJECT,
    epoch: int = 202603,
    kind: str = "weight",
    event: uuid.UUID | None = None,
    plaintext: bytes = PLAINTEXT,
) -> tuple[uuid.UUID, bytes, WrappedKey | None]:
    event = event or uuid.uuid4()
    sealed = sealer.seal(plaintext, event_id=event, huvudman=huvudman, subject_ref=subject,
                         epoch=epoch, kind=kind)
    return event, sealed.envelope, sealed.new_wrapped_key


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip(suite: KeySuite) -> None:
    sealer = sealer_for("1480", suite=suite)
    event, env, wrapped = seal(sealer)
    assert wrapped is not None and wrapped.suite is suite
    assert PLAINTEXT not in env and SUBJECT.encode() not in env
    assert len(env) == len(PLAINTEXT) + ENVELOPE_OVERHEAD
    header = parse_header(env)
    assert (header.version, header.epoch, header.key_id) == (1, 202603, wrapped.key_id)
    opener = opener_for("1480", suite)
    assert opener.open(env, event_id=event, kind="weight", wrapped_key=wrapped) == PLAINTEXT
    # The unwrapped key is cached: the next envelope needs no wrapped key.
    event2, env2, _ = seal(sealer)
    assert opener.open(env2, event_id=event2, kind="weight") == PLAINTEXT


@pytest.mark.parametrize("suite", SUITES)
def test_wrapped_key_survives_storage_encoding(suite: KeySuite) -> None:
    sealer = sealer_for("1480", suite=suite)
    event, env, wrapped = seal(sealer)
    stored = msgspec.json.decode(msgspec.json.encode(wrapped), type=WrappedKey)
    assert stored == wrapped
    assert SUBJECT.encode() not in msgspec.json.encode(wrapped)
    assert opener_for("1480", suite).open(env, event_id=event, kind="weight",
                                          wrapped_key=stored) == PLAINTEXT


def test_nonce_is_fresh_per_seal() -> None:
    sealer = sealer_for("1480")
    event = uuid.uuid4()
    _, a, _ = seal(sealer, event=event)
    _, b, _ = seal(sealer, event=event)
    assert a != b
    assert parse_header(a).key_id == parse_header(b).key_id


# --- keys and key files ----------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_key_files_round_trip_and_say_their_suite(suite: KeySuite) -> None:
    private, public = keypair("1480", suite)
    pub_pem, priv_pem = public.to_pem(), private.to_pem()
    assert f"Suite: {suite.value}".encode() in pub_pem
    assert f"Suite: {suite.value}".encode() in priv_pem
    assert b"Huvudman: 1480" in pub_pem
    assert pub_pem.startswith(b"-----BEGIN VGR HPKE PUBLIC KEY-----")
    loaded_pub = load_public_key(pub_pem)
    loaded_priv = load_private_key(priv_pem.decode())
    assert loaded_pub == public and loaded_pub.key_id == public.key_id
    assert loaded_priv.public_key() == public
    # A reloaded private key opens what the original public key sealed.
    sealer = Sealer({"1480": loaded_pub}, pseudonymizer())
    event, env, wrapped = seal(sealer)
    assert Opener("1480", [loaded_priv]).open(env, event_id=event, kind="weight",
                                              wrapped_key=wrapped) == PLAINTEXT


def test_key_raw_sizes() -> None:
    hybrid_priv, hybrid_pub = keypair("1480", KeySuite.MLKEM768_X25519)
    x_priv, x_pub = keypair("1480", KeySuite.X25519)
    assert (len(hybrid_pub.raw), len(hybrid_priv.private_bytes_raw())) == (1216, 96)
    assert (len(x_pub.raw), len(x_priv.private_bytes_raw())) == (32, 32)
    assert HuvudmanPublicKey(KeySuite.X25519, "1480", x_pub.raw) == x_pub
    with pytest.raises(KeyFormatError):
        HuvudmanPublicKey(KeySuite.MLKEM768_X25519, "1480", x_pub.raw)


def test_bad_key_files_are_refused() -> None:
    private, public = keypair("1480", KeySuite.X25519)
    pem = public.to_pem().decode()
    with pytest.raises(KeyFormatError, match="Key-Id"):
        load_public_key(pem.replace("Huvudman: 1480", "Huvudman: 1481"))
    with pytest.raises(KeyFormatError):
        load_public_key(pem.replace(KeySuite.X25519.value, "P256/HKDF-SHA256/AES-256-GCM"))
    with pytest.raises(KeyFormatError):
        load_public_key(private.to_pem())  # a private key file is not a public key file
    with pytest.raises(KeyFormatError):
        load_private_key(public.to_pem())
    with pytest.raises(KeyFormatError):
        load_public_key(b"garbage")
    with pytest.raises(KeyFormatError):
        HuvudmanPrivateKey.generate("14\nSuite: x")


def test_private_key_repr_has_no_key_material() -> None:
    private, _ = keypair("1480", KeySuite.X25519)
    assert private.private_bytes_raw().hex() not in repr(private)
    assert "1480" in repr(private)


# --- ingest cannot decrypt -------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_sealer_has_no_path_to_plaintext(suite: KeySuite) -> None:
    sealer = sealer_for("1480", "14", suite=suite)
    event, env, wrapped = seal(sealer)
    public_api = {name for name in dir(sealer) if not name.startswith("_")}
    assert public_api == {
        "cached_data_keys", "confirm", "kem_operations", "pending_wrapped_keys",
        "public_keys", "replace_public_keys", "seal",
    }
    # It holds no private key anywhere, and refuses one.
    held = [v for v in vars(sealer).values() if isinstance(v, dict)]
    for mapping in held:
        assert not any(isinstance(v, HuvudmanPrivateKey) for v in mapping.values())
    private, _ = keypair("1480", suite)
    with pytest.raises(TypeError):
        Sealer({"1480": private}, pseudonymizer())  # type: ignore[dict-item]
    # What the store holds (envelope + wrapped key) is opaque without the private key: a key
    # pair the ingest operator makes up for the same huvudman code gets nowhere.
    impostor = HuvudmanPrivateKey.generate("1480", suite)
    assert wrapped is not None
    with pytest.raises(WrongRecipientError):
        Opener("1480", [impostor]).open(env, event_id=event, kind="weight", wrapped_key=wrapped)
    forged = msgspec.structs.replace(wrapped, recipient_key_id=impostor.key_id)
    with pytest.raises(IntegrityError):
        Opener("1480", [impostor]).open(env, event_id=event, kind="weight", wrapped_key=forged)


@pytest.mark.parametrize("suite", SUITES)
def test_huvudman_a_cannot_open_b(suite: KeySuite) -> None:
    sealer = sealer_for("1401", "1402", suite=suite)
    event, env_b, wrapped_b = seal(sealer, huvudman="1402")
    assert wrapped_b is not None
    opener_a = opener_for("1401", suite)
    with pytest.raises(WrongRecipientError) as exc:
        opener_a.open(env_b, event_id=event, kind="weight", wrapped_key=wrapped_b)
    assert SUBJECT not in str(exc.value)
    # Relabel B's wrapped key as A's: HPKE refuses, A's key simply does not fit.
    relabelled = msgspec.structs.replace(
        wrapped_b, huvudman="1401", recipient_key_id=keypair("1401", suite)[0].key_id
    )
    with pytest.raises(IntegrityError):
        opener_a.open(env_b, event_id=event, kind="weight", wrapped_key=relabelled)
    # And an Opener cannot be built with another huvudman's private key.
    with pytest.raises(WrongRecipientError):
        Opener("1401", [keypair("1402", suite)[0]])


def test_same_subject_under_two_huvudmän_gets_separate_keys() -> None:
    sealer = sealer_for("14", "1480")
    w_region = seal(sealer, huvudman="14")[2]
    w_kommun = seal(sealer, huvudman="1480")[2]
    assert w_region is not None and w_kommun is not None
    assert w_region.key_id != w_kommun.key_id
    assert w_region.subject_pseudonym != w_kommun.subject_pseudonym  # not linkable


# --- associated data -------------------------------------------------------------------------


def test_moving_a_ciphertext_to_another_event_or_kind_fails() -> None:
    sealer = sealer_for("1480")
    event, env, wrapped = seal(sealer)
    opener = opener_for("1480")
    opener.open(env, event_id=event, kind="weight", wrapped_key=wrapped)
    with pytest.raises(IntegrityError) as exc:
        opener.open(env, event_id=uuid.uuid4(), kind="weight")
    assert SUBJECT not in str(exc.value) and "81.4" not in str(exc.value)
    with pytest.raises(IntegrityError):
        opener.open(env, event_id=event, kind="blood_pressure")


def test_moving_a_ciphertext_to_another_huvudman_fails_even_with_the_data_key() -> None:
    # Even someone holding the data key cannot make the ciphertext pass as another huvudman's:
    # the huvudman is in the associated data.
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sealer = sealer_for("1480")
    event, env, wrapped = seal(sealer)
    assert wrapped is not None
    private, _ = keypair("1480", KeySuite.X25519)
    info = envelope_module._wrap_info(wrapped.suite, wrapped.huvudman, wrapped.recipient_key_id,
                                      wrapped.key_id, wrapped.epoch, wrapped.subject_pseudonym)
    aead = AESGCM(envelope_module._hpke_unwrap(private, wrapped.wrapped, info))
    header, nonce, body = env[:21], env[21:33], env[33:]
    assert aead.decrypt(nonce, body, associated_data(header, event, "1480", "weight")) == PLAINTEXT
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, body, associated_data(header, event, "1481", "weight"))


@pytest.mark.parametrize("offset", [1, 4, 5, 20, 21, 32, 33, -1])
def test_any_flipped_byte_fails(offset: int) -> None:
    sealer = sealer_for("1480")
    event, env, wrapped = seal(sealer)
    opener = opener_for("1480")
    opener.open(env, event_id=event, kind="weight", wrapped_key=wrapped)
    tampered = bytearray(env)
    tampered[offset] ^= 0x01
    with pytest.raises((IntegrityError, UnknownDataKeyError)):
        opener.open(bytes(tampered), event_id=event, kind="weight")


def test_malformed_envelopes() -> None:
    opener = opener_for("1480")
    with pytest.raises(MalformedEnvelopeError):
        opener.open(b"\x01short", event_id=uuid.uuid4(), kind="weight")
    sealer = sealer_for("1480")
    event, env, _ = seal(sealer)
    with pytest.raises(MalformedEnvelopeError):
        opener.open(b"\x02" + env[1:], event_id=event, kind="weight")


@pytest.mark.parametrize(
    "field, value",
    [("epoch", 202604), ("subject_pseudonym", b"\x00" * 16), ("key_id", b"\x01" * 16),
     ("huvudman", "1481"), ("suite", KeySuite.MLKEM768_X25519),
     ("wrapped", b"\x00" * 80)],
)
def test_tampered_wrapped_key_record_does_not_unwrap(field: str, value: object) -> None:
    sealer = sealer_for("1480")
    _, _, wrapped = seal(sealer)
    assert wrapped is not None
    tampered = msgspec.structs.replace(wrapped, **{field: value})
    opener = opener_for("1480")
    with pytest.raises((IntegrityError, WrongRecipientError)):
        opener.add_wrapped_key(tampered)


def test_open_without_or_with_the_wrong_wrapped_key() -> None:
    sealer = sealer_for("1480")
    event, env, _ = seal(sealer, subject="a")
    _, _, other = seal(sealer, subject="b")
    assert other is not None
    opener = opener_for("1480")
    with pytest.raises(UnknownDataKeyError):
        opener.open(env, event_id=event, kind="weight")
    with pytest.raises(UnknownDataKeyError):
        opener.open(env, event_id=event, kind="weight", wrapped_key=other)


# --- data-key cache --------------------------------------------------------------------------


@pytest.fixture
def kem_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = envelope_module._hpke_wrap

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(envelope_module, "_hpke_wrap", counting)
    return calls


@pytest.mark.parametrize("suite", SUITES)
def test_data_key_is_cached_and_kem_runs_once(kem_calls: list[int], suite: KeySuite) -> None:
    sealer = sealer_for("1480", suite=suite)
    _, _, first = seal(sealer)
    envelopes = [seal(sealer)[1] for _ in range(50)]
    assert len(kem_calls) == 1 and sealer.kem_operations == 1
    assert first is not None
    assert {parse_header(e).key_id for e in envelopes} == {first.key_id}
    assert sealer.cached_data_keys == 1
    # A new subject, epoch or huvudman is a new data key.
    seal(sealer, subject="other")
    seal(sealer, epoch=202604)
    assert len(kem_calls) == 3 and sealer.cached_data_keys == 3


def test_wrapped_key_is_returned_until_confirmed(kem_calls: list[int]) -> None:
    sealer = sealer_for("1480")
    _, _, w1 = seal(sealer)
    _, _, w2 = seal(sealer)  # e.g. the first batch rolled back: it comes again
    assert w1 is not None and w1 == w2
    assert sealer.pending_wrapped_keys() == [w1]
    sealer.confirm([w1])
    _, _, w3 = seal(sealer)
    assert w3 is None
    assert sealer.pending_wrapped_keys() == []
    assert len(kem_calls) == 1


def test_cache_is_bounded_and_evicts_least_recently_used(kem_calls: list[int]) -> None:
    sealer = sealer_for("1480", max_cached_keys=2)
    seal(sealer, subject="a")
    seal(sealer, subject="b")
    seal(sealer, subject="a")  # a is now most recent
    seal(sealer, subject="c")  # evicts b
    assert sealer.cached_data_keys == 2 and len(kem_calls) == 3
    seal(sealer, subject="a")
    assert len(kem_calls) == 3
    seal(sealer, subject="b")
    assert len(kem_calls) == 4


def test_data_keys_expire_after_max_age(kem_calls: list[int]) -> None:
    now = [0.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    sealer = sealer_for("1480", max_key_age_s=60.0, clock=clock)
    _, e1, _ = seal(sealer)
    now[0] = 59.0
    _, e2, _ = seal(sealer)
    now[0] = 61.0
    _, e3, _ = seal(sealer)
    assert len(kem_calls) == 2
    assert parse_header(e1).key_id == parse_header(e2).key_id != parse_header(e3).key_id


def test_key_rotation_drops_cached_data_keys(kem_calls: list[int]) -> None:
    sealer = sealer_for("1480")
    seal(sealer)
    new_private, new_public = generate_keypair("1480", KeySuite.X25519)
    sealer.replace_public_keys({"1480": new_public})
    assert sealer.cached_data_keys == 0
    event, env, wrapped = seal(sealer)
    assert wrapped is not None and wrapped.recipient_key_id == new_public.key_id
    # The node holds both the old and the new private key during a rotation.
    old_private = keypair("1480", KeySuite.X25519)[0]
    opener = Opener("1480", [old_private, new_private])
    assert opener.open(env, event_id=event, kind="weight", wrapped_key=wrapped) == PLAINTEXT


def test_sealer_refuses_mislabelled_or_missing_keys() -> None:
    _, public_1481 = keypair("1481", KeySuite.X25519)
    with pytest.raises(WrongRecipientError):
        Sealer({"1480": public_1481}, pseudonymizer())
    sealer = sealer_for("1480")
    with pytest.raises(WrongRecipientError) as exc:
        seal(sealer, huvudman="1499")
    assert SUBJECT not in str(exc.value)


def test_epoch_must_fit_the_envelope() -> None:
    sealer = sealer_for("1480")
    with pytest.raises(CryptoError) as exc:
        seal(sealer, epoch=2**32)
    assert SUBJECT not in str(exc.value)


# --- pseudonyms ------------------------------------------------------------------------------


def test_pseudonym_is_deterministic_keyed_and_per_huvudman() -> None:
    p = Pseudonymizer(generate_secret())
    assert p.of("1480", SUBJECT) == p.of("1480", SUBJECT)
    assert p.of("1480", SUBJECT) != p.of("14", SUBJECT)
    assert p.of("1480", SUBJECT) != Pseudonymizer(generate_secret()).of("1480", SUBJECT)
    assert len(p.of("1480", SUBJECT)) == 16
    assert "secret" in repr(p) and SUBJECT not in repr(p)
    with pytest.raises(CryptoError):
        Pseudonymizer(b"short")


# --- property --------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=4096),
    event=st.uuids(),
    kind=st.text(min_size=1, max_size=40),
    subject=st.text(max_size=60),
    epoch=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_arbitrary_plaintext_round_trips(
    suite: KeySuite, plaintext: bytes, event: uuid.UUID, kind: str, subject: str, epoch: int
) -> None:
    sealer = _property_sealer(suite)
    sealed = sealer.seal(plaintext, event_id=event, huvudman="1480", subject_ref=subject,
                         epoch=epoch, kind=kind)
    opener = _property_opener(suite)
    if sealed.new_wrapped_key is not None:
        opener.add_wrapped_key(sealed.new_wrapped_key)
        sealer.confirm([sealed.new_wrapped_key])
    assert opener.open(sealed.envelope, event_id=event, kind=kind) == plaintext


@cache
def _property_sealer(suite: KeySuite) -> Sealer:
    return sealer_for("1480", suite=suite)


@cache
def _property_opener(suite: KeySuite) -> Opener:
    return opener_for("1480", suite)
