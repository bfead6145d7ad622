"""SIP Digest (adapters/sip_digest.py), as alarm centres ask for it (SS 91100 §8)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import sip_digest
from adapters.sip import SipError

RFC_2617 = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
            'opaque="5ccc069c403ebaf9f0171e9517f40e41"')


def test_the_rfc_2617_example_gives_its_response() -> None:
    challenge = sip_digest.parse_challenge(RFC_2617)
    assert challenge.qop == ("auth", "auth-int") and challenge.algorithm == "MD5"
    assert sip_digest.response(challenge, method="GET", uri="/dir/index.html",
                               username="Mufasa", password="Circle Of Life", nc=1,
                               cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"
    header = sip_digest.authorization(challenge, method="GET", uri="/dir/index.html",
                                      username="Mufasa", password="Circle Of Life", nc=1,
                                      cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_challenges_as_servers_write_them() -> None:
    plain = sip_digest.parse_challenge('Digest realm="arc", nonce="abc"')
    assert plain.qop == () and plain.opaque is None and not plain.stale
    sha = sip_digest.parse_challenge(
        'DIGEST realm="a \\"quoted\\" realm",nonce=xyz,algorithm=SHA-256,stale=TRUE,qop=auth')
    assert sha.realm == 'a "quoted" realm' and sha.nonce == "xyz"
    assert sha.algorithm == "SHA-256" and sha.stale and sha.qop == ("auth",)


@pytest.mark.parametrize("value, reason", [
    ('Basic realm="arc"', "not a Digest"),
    ('Digest realm="arc"', "realm and nonce are required"),
    ('Digest realm="arc", nonce="n", algorithm=SHA-512-256', "not supported"),
    ('Digest realm="arc", nonce="n", qop="auth-int"', "only qop=auth"),
    ('Digest realm="arc" nonce="n"', "not understood"),
    ("Digest " + "x" * 5000, "longer than"),
])
def test_a_challenge_that_will_not_do_is_refused_naming_the_header(value: str,
                                                                   reason: str) -> None:
    with pytest.raises(SipError, match=reason) as refused:
        sip_digest.parse_challenge(value, "Proxy-Authenticate")
    assert refused.value.field == "Proxy-Authenticate"


@given(user=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                    max_size=20),
       password=st.text(max_size=30), qop=st.booleans(),
       algorithm=st.sampled_from(["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"]))
def test_an_answer_verifies_with_the_password_and_not_without(user: str, password: str,
                                                              qop: bool,
                                                              algorithm: str) -> None:
    challenge = sip_digest.Challenge("arc", "nonce1", algorithm, ("auth",) if qop else ())
    header = sip_digest.authorization(challenge, method="MESSAGE", uri="sip:arc@10.0.0.1:5060",
                                      username=user, password=password, nc=7, cnonce="c0ffee")
    for given_password, valid in ((password, True), (password + "x", False)):
        assert sip_digest.verify(header, method="MESSAGE", realm="arc", nonces={"nonce1"},
                                 username=user, password=given_password) is valid


@given(st.text(max_size=300))
def test_any_header_value_parses_or_is_refused_as_a_sip_error(value: str) -> None:
    try:
        sip_digest.parse_challenge(value)
    except SipError:
        pass
