"""A user's own test file with the ``overlay`` and ``overlay_pair`` fixtures, run by pytester."""

from __future__ import annotations

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]

USER_TESTS = '''
def test_large_payload(overlay_pair):
    r = overlay_pair.tcp(nbytes=256 * 1024)
    assert r["ok"], r

def test_full_size_ping_with_df(overlay_pair):
    # 1422 bytes of ICMP payload + 28 of headers = 1450, the overlay MTU exactly
    r = overlay_pair.ping(count=2, size=1422, dont_fragment=True)
    assert r["received"] == 2, r

def test_oversize_ping_with_df_is_refused_locally(overlay_pair):
    r = overlay_pair.ping(count=1, size=1423, dont_fragment=True)
    assert r["received"] == 0 and r["errors"], r

def test_session_fixture(overlay):
    assert len(overlay.pairs()) == 6
'''


def test_user_test_file_gets_one_test_per_pair(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("--overlay-local=3", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=19)
    result.stdout.fnmatch_lines(["*test_user.py::test_large_payload[[]h1->h2[[]vni=4096[]][]] PASSED*"])
